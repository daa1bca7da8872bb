"""spec.json against the rules of Airbyte's connector acceptance tests (`TestSpec` in
connector_acceptance_test/tests/test_core.py) and of the Airbyte UI's form, plus the connector's own.

Each rule is a small function returning what breaks it (empty: the spec keeps it). Each test runs
its rule on spec.json, which must keep it, and on deliberately broken copies, which must not.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from source_telecmi.config import (
    API_URL_PATTERN,
    APP_ID_MOST_CHARS,
    APP_ID_PATTERN,
    NOT_BLANK_PATTERN,
    ConfigError,
    TelecmiConfig,
    upgraded,
)
from source_telecmi.timeline.instants import parse_utc

ROOT = Path(__file__).resolve().parent.parent
SPEC = json.loads((ROOT / "source_telecmi" / "spec.json").read_text())
CONNECTION = SPEC["connectionSpecification"]
DATE_FIELDS = ("start_date", "end_date")
DATE_PATTERN = CONNECTION["properties"]["start_date"]["pattern"]

# The acceptance tests' list (exact names, any case) of names that hold a secret.
CAT_SECRET_NAMES = (
    "client_token",
    "access_token",
    "api_token",
    "token",
    "secret",
    "client_secret",
    "password",
    "key",
    "service_account_info",
    "service_account",
    "tenant_id",
    "certificate",
    "jwt",
    "credentials",
    "app_id",
    "appid",
    "refresh_token",
)
# Names the connector treats as secrets (part of the name, like telecmi's `secret_named`).
SECRET_MARKS = ("password", "passwd", "secret", "token")
# The acceptance tests' suggested patterns for `format: date` and `format: date-time`.
CAT_DATE_PATTERN = "^[0-9]{2}-[0-9]{2}-[0-9]{4}$"
CAT_DATETIME_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2})?$"
FORBIDDEN_KEYS = (
    "not",
    "anyOf",
    "patternProperties",
    "prefixItems",
    "allOf",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "dependentRequired",
)
DISCRIMINATOR = "auth_type"


# ------------------------------------------------------------------------------------ walking


def properties(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(path, name, definition, the object declaring it) for every property at every depth, oneOf options included."""
    for name, prop in (node.get("properties") or {}).items():
        here = f"{path}.{name}" if path else name
        yield here, name, prop, node
        if isinstance(prop, dict):
            yield from properties(prop, here)
            for number, option in enumerate(prop.get("oneOf") or []):
                yield from properties(option, f"{here}[{number}]")
            if isinstance(prop.get("items"), dict):
                yield from properties(prop["items"], f"{here}[]")


def objects(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, object) for every dict in the spec, keys of `properties` included."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for number, value in enumerate(node):
            yield from objects(value, f"{path}/{number}")


def one_of_nodes(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, node in objects(spec):
        if isinstance(node.get("oneOf"), list) and not path.endswith("/properties"):
            yield path, node


def types_of(prop: dict[str, Any]) -> list[str]:
    declared = prop.get("type")
    return [declared] if isinstance(declared, str) else list(declared or [])


def storable(prop: dict[str, Any]) -> bool:
    """Whether a property can hold a secret: a string or a number, and no constant (the acceptance tests' reading)."""
    return bool({"string", "integer", "number"} & set(types_of(prop))) and not prop.get("const")


# -------------------------------------------------------------------------------------- rules


def secret_is_properly_marked(spec: dict[str, Any]) -> list[str]:
    """A secret-like name that can hold a secret is `airbyte_secret`; a field that cannot is not."""
    errors = []
    for path, name, prop, _ in properties(spec):
        secret_like = name.lower() in CAT_SECRET_NAMES or any(mark in name.lower() for mark in SECRET_MARKS)
        marked = prop.get("airbyte_secret", False)
        if secret_like and storable(prop) and not marked:
            errors.append(f"{path} should be marked airbyte_secret")
        if marked and not storable(prop):
            errors.append(f"{path} is marked airbyte_secret but cannot hold a secret")
    return errors


def property_type_is_not_array(spec: dict[str, Any]) -> list[str]:
    """One type per field (the UI renders no union; the acceptance tests allow at most [type, "null"])."""
    errors = []
    for path, _, prop, _ in properties(spec):
        declared = prop.get("type")
        if not isinstance(declared, str) and not (
            isinstance(declared, list) and len(declared) == 2 and declared[1] == "null"
        ):
            errors.append(f"{path} has type {declared!r}, not one type")
    return errors


def object_not_empty(spec: dict[str, Any]) -> list[str]:
    """An object field has properties (or a oneOf), or the UI cannot show it."""
    return [
        f"{path} is an empty object"
        for path, _, prop, _ in properties(spec)
        if prop.get("type") == "object" and "oneOf" not in prop and not prop.get("properties")
    ]


def array_type(spec: dict[str, Any]) -> list[str]:
    """An array's items are one schema, an object, a string, a number or an enum."""
    errors = []
    for path, _, prop, _ in properties(spec):
        if prop.get("type") != "array" or "items" not in prop:
            continue
        items = prop["items"]
        if isinstance(items, list):
            errors.append(f"{path} has more than one item type")
        elif items.get("type") not in ("object", "string", "number", "integer") and "enum" not in items:
            errors.append(f"{path} items must be an object, a string, a number or an enum")
    return errors


def forbidden_complex_types(spec: dict[str, Any]) -> list[str]:
    """No JSON schema keyword the UI cannot interpret (a property may be named like one)."""
    return [
        f"{path}/{key}"
        for path, node in objects(spec)
        if not path.endswith("/properties")
        for key in FORBIDDEN_KEYS
        if key in node
    ]


def oneof_usage(spec: dict[str, Any]) -> list[str]:
    """Each oneOf: an object of object options, with exactly one common `const` property (the same
    `auth_type` in every option), required, with a `default` equal to its const, distinct consts."""
    errors = []
    for path, node in one_of_nodes(spec):
        options = node["oneOf"]
        if node.get("type") != "object":
            errors.append(f"{path} holds a oneOf but is not of type object")
        if not all(option.get("type") == "object" and "properties" in option for option in options):
            errors.append(f"{path}: every oneOf option must be an object with properties")
            continue
        common = set.intersection(*(set(option["properties"]) for option in options))
        consts = sorted(name for name in common if all("const" in o["properties"][name] for o in options))
        if consts != [DISCRIMINATOR]:
            errors.append(f"{path}: the options' one common const property must be {DISCRIMINATOR}, found {consts}")
            continue
        values = [option["properties"][DISCRIMINATOR]["const"] for option in options]
        if len(set(values)) != len(values):
            errors.append(f"{path}: the options' {DISCRIMINATOR} consts repeat: {values}")
        for number, option in enumerate(options):
            prop = option["properties"][DISCRIMINATOR]
            if prop.get("default") != prop["const"]:
                errors.append(f"{path}/oneOf/{number}: {DISCRIMINATOR}'s default must equal its const")
            if "enum" in prop and prop["enum"] != [prop["const"]]:
                errors.append(f"{path}/oneOf/{number}: {DISCRIMINATOR}'s enum must be its const alone")
            if prop.get("type") != "string":
                errors.append(f"{path}/oneOf/{number}: {DISCRIMINATOR} must be a string")
            if DISCRIMINATOR not in option.get("required", []):
                errors.append(f"{path}/oneOf/{number}: {DISCRIMINATOR} must be required")
    return errors


def date_pattern(spec: dict[str, Any]) -> list[str]:
    """The dates carry the connector's pattern and a pattern_descriptor; a `format: date(-time)`
    would carry the acceptance tests' pattern (their datepicker's output)."""
    errors = []
    fields = spec["properties"]
    for name in DATE_FIELDS:
        if fields[name].get("pattern") != DATE_PATTERN:
            errors.append(f"{name}: the pattern differs from start_date's, the forms parse_utc accepts")
        if not fields[name].get("pattern_descriptor"):
            errors.append(f"{name} has no pattern_descriptor")
    expected = {"date": CAT_DATE_PATTERN, "date-time": CAT_DATETIME_PATTERN}
    for path, _, prop, _ in properties(spec):
        form = prop.get("format")
        if form in expected and prop.get("pattern") != expected[form]:
            errors.append(f"{path} has format {form} without the pattern {expected[form]}")
    return errors


def date_format(spec: dict[str, Any]) -> list[str]:
    """No `format` on the dates (date-time would turn away 2024-01-01 and render a date-time picker
    that the pattern does not describe), and the acceptance tests' date patterns come with their format."""
    errors = [f"{name} has a format" for name in DATE_FIELDS if "format" in spec["properties"][name]]
    for path, _, prop, _ in properties(spec):
        pattern = prop.get("pattern")
        if pattern == CAT_DATE_PATTERN and prop.get("format") != "date":
            errors.append(f"{path} has a date pattern without format: date")
        if pattern == CAT_DATETIME_PATTERN and prop.get("format") != "date-time":
            errors.append(f"{path} has a date-time pattern without format: date-time")
    return errors


def duplicate_order(spec: dict[str, Any]) -> list[str]:
    """`order` values do not repeat among the fields of one object (and group)."""
    errors = []
    for path, node in objects(spec):
        if node.get("type") != "object" or not isinstance(node.get("properties"), dict):
            continue
        seen: set[tuple[str, Any]] = set()
        for name, prop in node["properties"].items():
            if "order" not in prop:
                continue
            key = (prop.get("group", ""), prop["order"])
            if key in seen:
                errors.append(f"{path}/properties/{name} repeats order {prop['order']}")
            seen.add(key)
    return errors


def order_and_title_everywhere(spec: dict[str, Any]) -> list[str]:
    """Every field at every level has a title and an order, and every oneOf option a title (the form shows them)."""
    errors = [f"{path} has no title" for path, _, prop, _ in properties(spec) if not prop.get("title")]
    errors += [f"{path} has no order" for path, _, prop, _ in properties(spec) if "order" not in prop]
    for path, node in one_of_nodes(spec):
        errors += [
            f"{path}/oneOf/{n} has no title" for n, option in enumerate(node["oneOf"]) if not option.get("title")
        ]
    return errors


def required_always_show(spec: dict[str, Any]) -> list[str]:
    """`always_show` only on optional fields: required fields are always shown."""
    return [
        f"{path} is required and always_show"
        for path, name, prop, parent in properties(spec)
        if prop.get("always_show") and name in parent.get("required", [])
    ]


def display_type(spec: dict[str, Any]) -> list[str]:
    """`display_type` only on a field with a oneOf, and only dropdown or radio."""
    errors = []
    for path, _, prop, _ in properties(spec):
        if "display_type" not in prop:
            continue
        if "oneOf" not in prop:
            errors.append(f"{path} has a display_type but no oneOf")
        if prop["display_type"] not in ("dropdown", "radio"):
            errors.append(f"{path}: display_type must be dropdown or radio")
    return errors


def nested_group(spec: dict[str, Any]) -> list[str]:
    """`group` only on top-level fields."""
    top = set(spec.get("properties", {}))
    return [
        f"{path} has a group below the top level"
        for path, name, prop, parent in properties(spec)
        if "group" in prop and not (parent is spec and name in top)
    ]


def enum_usage(spec: dict[str, Any]) -> list[str]:
    """An enum lists distinct values, and a field's default is one of them."""
    errors = []
    for path, _, prop, _ in properties(spec):
        enum = prop.get("enum")
        if enum is None:
            continue
        if len(set(map(json.dumps, enum))) != len(enum):
            errors.append(f"{path}: the enum repeats a value")
        if "default" in prop and prop["default"] not in enum:
            errors.append(f"{path}: the default is not in the enum")
    return errors


def defined_refs_exist_in_json_spec_file(spec: dict[str, Any]) -> list[str]:
    """No `$ref` (the acceptance tests reject unresolved ones; the spec has nothing to share)."""
    return [f"{path}/$ref" for path, node in objects(spec) if "$ref" in node and not path.endswith("/properties")]


def additional_properties_is_true(spec: dict[str, Any]) -> list[str]:
    """additionalProperties is true where set: false breaks every config when a field is removed."""
    return [
        f"{path}: additionalProperties is {node['additionalProperties']!r}"
        for path, node in objects(spec)
        if "additionalProperties" in node
        and not path.endswith("/properties")
        and node["additionalProperties"] is not True
    ]


def examples_where_typed(spec: dict[str, Any]) -> list[str]:
    """A field the user types (no const, no enum, not a secret, not an object) shows examples."""
    return [
        f"{path} has no examples"
        for path, _, prop, _ in properties(spec)
        if prop.get("type") in ("string", "integer", "number")
        and not ({"const", "enum"} & set(prop))
        and not prop.get("airbyte_secret")
        and not prop.get("examples")
    ]


def pattern_has_descriptor(spec: dict[str, Any]) -> list[str]:
    """A `pattern` comes with a `pattern_descriptor`, which the UI shows instead of the regex."""
    return [
        f"{path} has a pattern without a pattern_descriptor"
        for path, _, prop, _ in properties(spec)
        if "pattern" in prop and not prop.get("pattern_descriptor")
    ]


def patterns_are_portable(spec: dict[str, Any]) -> list[str]:
    """Patterns mean the same in Python (the connector's check) and ECMA-262 (the UI): plain classes
    and anchors only, `[0-9]` rather than `\\d` (which is any Unicode digit in Python)."""
    errors = []
    for path, _, prop, _ in properties(spec):
        pattern = prop.get("pattern")
        if pattern is None:
            continue
        if re.search(r"\\[dwbAZzG]|\(\?[P<=!#aiLmsux]", pattern):
            errors.append(f"{path}: the pattern uses a construct that differs between Python and ECMA-262")
        if not (pattern.startswith("^") and pattern.endswith("$")):
            errors.append(f"{path}: the pattern is not anchored at both ends")
    return errors


def defaults_are_valid(spec: dict[str, Any]) -> list[str]:
    """Every default and example is valid against its own field."""
    errors = []
    for path, _, prop, _ in properties(spec):
        schema = {k: v for k, v in prop.items() if k not in ("properties", "oneOf", "required")}
        samples = ([prop["default"]] if "default" in prop else []) + list(prop.get("examples", []))
        errors += [
            f"{path}: {value!r} is not valid there" for value in samples if not Draft7Validator(schema).is_valid(value)
        ]
    return errors


# ------------------------------------------------------------------------------ broken copies


def broken(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """A copy of the connection specification with one deliberate mistake."""
    spec = copy.deepcopy(CONNECTION)
    change(spec)
    return spec


def option(spec: dict[str, Any], number: int) -> dict[str, Any]:
    return spec["properties"]["credentials"]["oneOf"][number]


def field(spec: dict[str, Any], number: int, name: str) -> dict[str, Any]:
    return option(spec, number)["properties"][name]


CASES: dict[Callable[[dict[str, Any]], list[str]], list[Callable[[dict[str, Any]], Any]]] = {
    secret_is_properly_marked: [
        lambda s: field(s, 0, "app_id").pop("airbyte_secret"),
        lambda s: field(s, 2, "token").pop("airbyte_secret"),
        lambda s: field(s, 0, "auth_type").update(airbyte_secret=True),
        lambda s: s["properties"].update(jwt={"type": "string", "title": "JWT", "order": 7}),
    ],
    property_type_is_not_array: [
        lambda s: field(s, 0, "app_id").update(type=["integer", "string"]),
        lambda s: s["properties"]["num_workers"].update(type=["integer", "string", "null"]),
    ],
    object_not_empty: [lambda s: s["properties"].update(extra={"type": "object", "title": "Extra", "order": 7})],
    array_type: [
        lambda s: s["properties"].update(
            tags={"type": "array", "title": "Tags", "order": 7, "items": [{"type": "string"}, {"type": "integer"}]}
        ),
        lambda s: s["properties"].update(
            tags={"type": "array", "title": "Tags", "order": 7, "items": {"type": "boolean"}}
        ),
    ],
    forbidden_complex_types: [
        lambda s: s["properties"]["region"].update(anyOf=[{"const": "global"}, {"const": "india"}]),
        lambda s: s.update({"if": {"required": ["end_date"]}}),
    ],
    oneof_usage: [
        lambda s: field(s, 1, "auth_type").pop("const"),
        lambda s: field(s, 0, "auth_type").update(default="login"),
        lambda s: field(s, 2, "auth_type").pop("default"),
        lambda s: option(s, 1)["required"].remove("auth_type"),
        lambda s: field(s, 2, "auth_type").update(const="app", default="app"),
        lambda s: [option(s, n)["properties"].update(kind={"type": "string", "const": str(n)}) for n in range(3)],
        lambda s: s["properties"]["credentials"].update(type="string"),
    ],
    date_pattern: [
        lambda s: s["properties"]["end_date"].pop("pattern"),
        lambda s: s["properties"]["start_date"].pop("pattern_descriptor"),
        lambda s: s["properties"]["api_url"].update(format="date-time"),
    ],
    date_format: [
        lambda s: s["properties"]["start_date"].update(format="date-time"),
        lambda s: s["properties"]["api_url"].update(pattern=CAT_DATE_PATTERN),
    ],
    duplicate_order: [
        lambda s: s["properties"]["api_url"].update(order=1),
        lambda s: field(s, 1, "password").update(order=1),
    ],
    order_and_title_everywhere: [
        lambda s: s["properties"]["region"].pop("order"),
        lambda s: field(s, 1, "auth_type").pop("title"),
        lambda s: field(s, 2, "token").pop("order"),
        lambda s: option(s, 0).pop("title"),
    ],
    required_always_show: [lambda s: s["properties"]["start_date"].update(always_show=True)],
    display_type: [
        lambda s: s["properties"]["region"].update(display_type="dropdown"),
        lambda s: s["properties"]["credentials"].update(display_type="tabs"),
    ],
    nested_group: [lambda s: field(s, 0, "app_id").update(group="auth")],
    enum_usage: [
        lambda s: s["properties"]["region"].update(enum=["global", "india", "global"]),
        lambda s: s["properties"]["region"].update(default="mars"),
    ],
    defined_refs_exist_in_json_spec_file: [
        lambda s: s["properties"].update(window={"$ref": "#/properties/start_date"}),
    ],
    additional_properties_is_true: [
        lambda s: s.update(additionalProperties=False),
        lambda s: option(s, 0).update(additionalProperties=False),
    ],
    examples_where_typed: [
        lambda s: s["properties"]["api_url"].pop("examples"),
        lambda s: field(s, 1, "user_id").pop("examples"),
    ],
    pattern_has_descriptor: [lambda s: field(s, 0, "app_id").pop("pattern_descriptor")],
    patterns_are_portable: [
        lambda s: field(s, 0, "app_id").update(pattern=r"^\d+$"),
        lambda s: field(s, 0, "app_id").update(pattern="[0-9]+"),
    ],
    defaults_are_valid: [
        lambda s: s["properties"]["num_workers"].update(default=64),
        lambda s: s["properties"]["start_date"].update(examples=["01/01/2024"]),
        lambda s: field(s, 0, "app_id").update(examples=[1111112]),
    ],
}


def cases(rule: Callable[[dict[str, Any]], list[str]]) -> tuple[str, list[Any]]:
    """spec.json, which keeps `rule`, and each broken copy of CASES[rule], which must not."""
    params = [pytest.param(CONNECTION, True, id="spec.json")]
    params += [pytest.param(broken(change), False, id=f"broken{n}") for n, change in enumerate(CASES[rule])]
    return "spec, keeps_it", params


def check(rule: Callable[[dict[str, Any]], list[str]], spec: dict[str, Any], keeps_it: bool) -> None:
    errors = rule(spec)
    if keeps_it:
        assert errors == []
    else:
        assert errors, f"{rule.__name__} did not notice the broken copy"


@pytest.mark.parametrize(*cases(secret_is_properly_marked))
def test_secret_is_properly_marked(spec, keeps_it):
    check(secret_is_properly_marked, spec, keeps_it)


@pytest.mark.parametrize(*cases(property_type_is_not_array))
def test_property_type_is_not_array(spec, keeps_it):
    check(property_type_is_not_array, spec, keeps_it)


@pytest.mark.parametrize(*cases(object_not_empty))
def test_object_not_empty(spec, keeps_it):
    check(object_not_empty, spec, keeps_it)


@pytest.mark.parametrize(*cases(array_type))
def test_array_type(spec, keeps_it):
    check(array_type, spec, keeps_it)


@pytest.mark.parametrize(*cases(forbidden_complex_types))
def test_forbidden_complex_types(spec, keeps_it):
    check(forbidden_complex_types, spec, keeps_it)


@pytest.mark.parametrize(*cases(oneof_usage))
def test_oneof_usage(spec, keeps_it):
    check(oneof_usage, spec, keeps_it)


@pytest.mark.parametrize(*cases(date_pattern))
def test_date_pattern(spec, keeps_it):
    check(date_pattern, spec, keeps_it)


@pytest.mark.parametrize(*cases(date_format))
def test_date_format(spec, keeps_it):
    check(date_format, spec, keeps_it)


@pytest.mark.parametrize(*cases(duplicate_order))
def test_duplicate_order(spec, keeps_it):
    check(duplicate_order, spec, keeps_it)


@pytest.mark.parametrize(*cases(order_and_title_everywhere))
def test_order_and_title_everywhere(spec, keeps_it):
    check(order_and_title_everywhere, spec, keeps_it)


@pytest.mark.parametrize(*cases(required_always_show))
def test_required_always_show(spec, keeps_it):
    check(required_always_show, spec, keeps_it)


@pytest.mark.parametrize(*cases(display_type))
def test_display_type(spec, keeps_it):
    check(display_type, spec, keeps_it)


@pytest.mark.parametrize(*cases(nested_group))
def test_nested_group(spec, keeps_it):
    check(nested_group, spec, keeps_it)


@pytest.mark.parametrize(*cases(enum_usage))
def test_enum_usage(spec, keeps_it):
    check(enum_usage, spec, keeps_it)


@pytest.mark.parametrize(*cases(defined_refs_exist_in_json_spec_file))
def test_defined_refs_exist_in_json_spec_file(spec, keeps_it):
    check(defined_refs_exist_in_json_spec_file, spec, keeps_it)


@pytest.mark.parametrize(*cases(additional_properties_is_true))
def test_additional_properties_is_true(spec, keeps_it):
    check(additional_properties_is_true, spec, keeps_it)


@pytest.mark.parametrize(*cases(examples_where_typed))
def test_examples_where_typed(spec, keeps_it):
    check(examples_where_typed, spec, keeps_it)


@pytest.mark.parametrize(*cases(pattern_has_descriptor))
def test_pattern_has_descriptor(spec, keeps_it):
    check(pattern_has_descriptor, spec, keeps_it)


@pytest.mark.parametrize(*cases(patterns_are_portable))
def test_patterns_are_portable(spec, keeps_it):
    check(patterns_are_portable, spec, keeps_it)


@pytest.mark.parametrize(*cases(defaults_are_valid))
def test_defaults_are_valid(spec, keeps_it):
    check(defaults_are_valid, spec, keeps_it)


# ---------------------------------------------------------------------- the spec as a validator


def test_the_spec_is_a_draft7_schema():
    Draft7Validator.check_schema(CONNECTION)


def test_the_spec_has_no_format_anywhere():
    """The CLI checks configs with Draft7 (run.py): a `format` would be checked by some validators and not others."""
    assert [path for path, _, prop, _ in properties(CONNECTION) if "format" in prop] == []


def _as_typed_in_the_form(config: dict[str, Any]) -> dict[str, Any]:
    """The config with `app_id` a digit string, as the form enters it; the CLI's own spec check accepts an
    int app_id in an existing config (run.py), which the spec, one type per field, does not declare."""
    config = copy.deepcopy(config)
    credentials = config.get("credentials", {})
    if isinstance(credentials.get("app_id"), int):
        credentials["app_id"] = str(credentials["app_id"])
    return config


def _test_configs() -> Iterator[Any]:
    for path in sorted((ROOT / "integration_tests" / "standard").glob("*.json")):
        yield pytest.param(json.loads(path.read_text()), id=path.name)
    from integration_tests.harness import KINDS, config

    for kind in KINDS:
        yield pytest.param(config("http://127.0.0.1:8000", kind), id=f"harness-{kind}")


@pytest.mark.parametrize("config", list(_test_configs()))
def test_the_test_configs_match_the_spec(config):
    errors = [error.message for error in Draft7Validator(CONNECTION).iter_errors(_as_typed_in_the_form(config))]
    assert errors == []


@pytest.mark.parametrize(
    "credentials",
    [
        {"auth_type": "app", "app_id": "11x", "app_secret": "s"},
        {"auth_type": "app", "app_id": "", "app_secret": "s"},
        {"auth_type": "app", "app_secret": "s"},
        {"auth_type": "login", "user_id": "101_1111112"},
        {"auth_type": "token"},
        {"auth_type": "oauth", "token": "t"},
        {"token": "t"},
    ],
)
def test_the_spec_turns_away_incomplete_credentials(credentials):
    assert not Draft7Validator(CONNECTION).is_valid({"credentials": credentials, "start_date": "2024-01-01"})


# ------------------------------------------------------------- the date pattern and parse_utc

# Forms parse_utc accepts (timeline._DATE and _DATE_TIME, then datetime.fromisoformat): the pattern must admit each.
ACCEPTED_DATES = [
    "2024-01-01",
    "2024-02-29",
    "0001-01-01T00:00+01:00",
    "9999-12-31T23:59-01:00",
    "2024-01-01T00:00",
    "2024-01-01 00:00",
    "2024-01-01t10:30",
    "2024-01-01T10:30:59",
    "2024-01-01T10:30:59.1",
    "2024-01-01T10:30:59.123",
    "2024-01-01T10:30:59.123456789",
    "2024-01-01T00:00:00Z",
    "2024-01-01T00:00z",
    "2024-01-01T00:00:00.000Z",
    "2024-01-01T00:00:00+00:00",
    "2024-01-01T00:00+05:30",
    "2024-01-01T00:00-0530",
    "2024-01-01T23:59:59.999999999+23:59",
    "2024-01-01 23:59:59-23:59",
    " 2024-01-01 ",
    "2024-01-01T00:00:00Z\n",
]
# Forms parse_utc turns away: the pattern must turn away each.
REJECTED_DATES = [
    "",
    " ",
    "2024",
    "2024-01",
    "2024-1-01",
    "2024-01-1",
    "20240101",
    "12/01/2025",
    "01-12-2025",
    "2024-13-01",
    "2024-00-10",
    "2024-01-00",
    "2024-01-32",
    "2024-01-01T",
    "2024-01-01T00",
    "2024-01-01T0:00",
    "2024-01-01T24:00",
    "2024-01-01T23:60",
    "2024-01-01T23:59:60",
    "2024-01-01T00:00:00.",
    "2024-01-01T00:00:00.1234567890",
    "2024-01-01T00:00:00,5",
    "2024-01-01T00:00.5",
    "2024-01-01Z",
    "2024-01-01+05:30",
    "2024-01-01T00:00+24:00",
    "2024-01-01T00:00+5:30",
    "2024-01-01T00:00+05",
    "2024-01-01T00:00ZZ",
    "2024-01-01T00:00 UTC",
    "2024-01-01X00:00",
    "2024-01-01T00:00:00Z trailing",
    "\ufeff2024-01-01",
    "\uff12\uff10\uff12\uff14-01-01",  # fullwidth digits
    "\u0662\u0660\u0662\u0664-01-01",  # Arabic-Indic digits
    "1704067200000",
    "tomorrow",
]
# Forms the pattern admits that parse_utc turns away as "not a real date": the calendar is the
# connector's to check (its message names the field), not a regex's.
CALENDAR_ONLY = ["2023-02-29", "2024-02-30", "2024-04-31", "0000-01-01"]


def parses(text: str) -> bool:
    try:
        parse_utc(text, "start_date")
    except ValueError:
        return False
    return True


def admitted(text: str) -> bool:
    return Draft7Validator(CONNECTION).is_valid(
        {"credentials": {"auth_type": "token", "token": "t"}, "start_date": text}
    )


@pytest.mark.parametrize("text", ACCEPTED_DATES)
def test_the_date_pattern_admits_every_form_parse_utc_accepts(text):
    assert parses(text)
    assert admitted(text)


@pytest.mark.parametrize("text", REJECTED_DATES)
def test_the_date_pattern_turns_away_what_parse_utc_turns_away(text):
    assert not parses(text)
    assert not admitted(text)


@pytest.mark.parametrize("text", CALENDAR_ONLY)
def test_impossible_calendar_days_are_left_to_parse_utc(text):
    assert admitted(text)
    assert not parses(text)


@pytest.mark.parametrize("text", ["2024-01-01T00:00+05:60", "2024-01-01T00:00-0099"])
def test_the_date_pattern_turns_away_offset_minutes_over_59(text):
    """Python's fromisoformat reads +05:60 as +06:00, and so parse_utc takes it: the spec does not."""
    assert not admitted(text)


def test_the_date_pattern_is_the_same_for_both_dates():
    assert CONNECTION["properties"]["end_date"]["pattern"] == DATE_PATTERN


def test_the_date_pattern_matches_the_same_with_ascii_classes():
    """The UI (JavaScript, ECMA-262) reads `[0-9]` as ASCII digits, as Python does, and `\\s` about as Python
    does: the examples match the same with Python's re.ASCII."""
    ascii_pattern = re.compile(DATE_PATTERN, re.ASCII)
    for text in ACCEPTED_DATES + CALENDAR_ONLY:
        assert ascii_pattern.search(text), text
    for text in REJECTED_DATES:
        assert not ascii_pattern.search(text), text


# ------------------------------------------------------------- the parser and the spec agree

# A config the spec admits is one the parser reads, and the other way round, for every field: the
# command checks both (run.py), and any other client (the platform's form, PyAirbyte) only the spec.
PARSED_AT = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the sync's start


def parser_reads(config: dict[str, Any]) -> bool:
    try:
        TelecmiConfig.parse(config, sync_started_at=PARSED_AT)
    except ConfigError:
        return False
    return True


def spec_admits(config: dict[str, Any]) -> bool:
    return Draft7Validator(CONNECTION).is_valid(config)


TOKEN_CREDENTIALS = {"auth_type": "token", "token": "t"}
APP_CREDENTIALS = {"auth_type": "app", "app_id": "1111112", "app_secret": "s"}
LOGIN_CREDENTIALS = {"auth_type": "login", "user_id": "101_1111112", "password": "pw"}
BLANKS = ["", " ", "\t\n", "\u3000", "\u2028", "\u00a0"]
NOT_TEXT = [None, 5, True, ["s"], {"s": 1}]


def with_credentials(base: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    return {"start_date": "2024-01-01", "credentials": {**base, name: value}}


def with_field(name: str, value: Any, credentials: dict[str, Any] = TOKEN_CREDENTIALS) -> dict[str, Any]:
    return {"start_date": "2024-01-01", "credentials": credentials, name: value}


AGREEMENT = [
    *[
        with_credentials(APP_CREDENTIALS, "app_id", value)
        for value in [
            "1111112",
            " 1111112 ",
            "\t1111112\n",
            "\u00a01111112\u3000",
            "0001111112",
            "1111112\u00b2",
            "\uff11\uff11\uff11\uff11\uff11\uff11\uff12",
            "\u0661\u0661\u0661\u0661\u0661\u0661\u0662",
            "0",
            "000",
            "11 11",
            "+1111112",
            "-1111112",
            "1_111_112",
            "1111112.0",
            "0x10F447",
            "1" * 64,
            "1" * 65,
            " " + "1" * 63,
            "1" * 5000,  # more digits than Python's int() reads: it crashed the parser
            "0" * 5000 + "1",
            *BLANKS,
            *NOT_TEXT,
            1111112.0,
        ]
    ],
    *[
        with_credentials(base, name, value)
        for base, name in (
            (APP_CREDENTIALS, "app_secret"),
            (TOKEN_CREDENTIALS, "token"),
            (LOGIN_CREDENTIALS, "user_id"),
        )
        for value in ["s", " s ", "s\n", "\u00e9", *BLANKS, *NOT_TEXT]
    ],
    *[with_credentials(LOGIN_CREDENTIALS, "password", value) for value in ["pw", " ", " p w ", "", *NOT_TEXT]],
    *[with_credentials(TOKEN_CREDENTIALS, "auth_type", value) for value in ["token", "app", "Token", "", None]],
    *[
        with_field(name, value)
        for name in ("num_workers", "lookback_window_days")
        for value in [1, 32, 8.0, 0, 33, -1, 3650, 3651, "8", "\uff18", True, 8.5, float("nan"), None, [8]]
    ],
    *[
        with_field("region", value, APP_CREDENTIALS)
        for value in ["global", "india", "", "Global", " india", None, 1, ["global"]]
    ],
    *[
        with_field("api_url", value)
        for value in [
            "",
            "  ",
            "https://rest.telecmi.com",
            " https://rest.telecmi.com/ ",
            "http://127.0.0.1:8080/",
            "http://[::1]:9",
            "https://proxy.example/telecmi/v2",
            "HTTPS://REST.TELECMI.COM",
            "https://user:pw@proxy.example",
            "ftp://x",
            "rest.telecmi.com",
            "https://",
            "https:///path",
            "https://proxy.example/?a=1",
            "https://proxy.example#top",
            "https://exa mple.com",
            "https://rest.telecmi.com\u00a0/v2",
            None,
            42,
        ]
    ],
    *[with_field("end_date", value) for value in ["2025-01-01", "", "  ", None, 17, "2025-13-01"]],
    *[with_field("start_date", value) for value in ["2024-01-01", "", None, 17, "yesterday"]],
    {"start_date": "2024-01-01"},
    {"start_date": "2024-01-01", "credentials": "t"},
    {"credentials": TOKEN_CREDENTIALS},
]

# What no pattern says, the parser alone checks (and names): it reads none of these, the spec admits all.
PARSER_ONLY = [
    with_field("start_date", "2024-02-30"),
    with_field("start_date", "0001-01-01T00:00+01:00"),
    with_field("start_date", "1969-12-31"),
    with_field("end_date", "9999-12-31T23:59-01:00"),
    with_field("end_date", "2023-12-31"),  # before start_date
    with_field("start_date", "2026-06-01"),  # in the future, without an end_date
    with_field("api_url", "http://rest.telecmi.com"),  # http to a host that is not loopback
    with_field("api_url", "https://:8080"),  # no host
    with_field("api_url", "https://proxy.example:99999"),  # no port
    with_field("region", "india", TOKEN_CREDENTIALS),  # India reads app credentials only
]


@pytest.mark.parametrize("config", AGREEMENT, ids=[json.dumps(c, default=str)[-60:] for c in AGREEMENT])
def test_the_parser_reads_a_config_exactly_when_the_spec_admits_it(config):
    config = upgraded(config)  # as the command does first (SourceTelecmi.configure): 0.2's integer app id
    assert parser_reads(config) == spec_admits(config)


@pytest.mark.parametrize("config", PARSER_ONLY, ids=[json.dumps(c)[-60:] for c in PARSER_ONLY])
def test_rules_no_pattern_can_say_are_the_parsers_and_name_the_field(config):
    assert spec_admits(config)
    with pytest.raises(ConfigError) as error:
        TelecmiConfig.parse(config, sync_started_at=PARSED_AT)
    named = [name for name in ("start_date", "end_date", "api_url", "credentials") if name in error.value.message]
    assert named and "\n" not in error.value.message


def test_the_agreement_covers_both_answers_for_every_field():
    """Each field of the table has configs both read and configs both turn away (no one-sided table)."""
    for config in AGREEMENT:
        assert isinstance(config, dict)
    admitted = [c for c in AGREEMENT if spec_admits(c)]
    assert 20 < len(admitted) < len(AGREEMENT) - 50


def test_the_spec_patterns_are_the_parsers():
    assert field(CONNECTION, 0, "app_id")["pattern"] == APP_ID_PATTERN
    assert field(CONNECTION, 0, "app_id")["maxLength"] == APP_ID_MOST_CHARS
    for number, name in ((0, "app_secret"), (1, "user_id"), (2, "token")):
        assert field(CONNECTION, number, name)["pattern"] == NOT_BLANK_PATTERN
    assert CONNECTION["properties"]["api_url"]["pattern"] == API_URL_PATTERN


def test_an_app_id_saved_by_0_2_as_an_integer_is_admitted_and_read_once_upgraded():
    config = upgraded(with_credentials(APP_CREDENTIALS, "app_id", 1111112))
    assert spec_admits(config) and parser_reads(config)
    assert TelecmiConfig.parse(config, sync_started_at=PARSED_AT).credentials.app_id == 1111112
