"""The config is checked once, with a one-line reason naming what is wrong."""

import pytest
from airbyte_cdk.utils.airbyte_secrets_utils import filter_secrets

from source_telecmi.config import ConfigError, TelecmiConfig, upgraded
from source_telecmi.secrets import mask
from source_telecmi.telecmi.platforms import ACCOUNT, INDIA, PLATFORMS, USER
from source_telecmi.timeline.instants import DAY_MS

JAN_1 = 1704067200000
TOKEN = {"auth_type": "token", "token": "abc-token"}
APP = {"auth_type": "app", "app_id": 1111112, "app_secret": "s3cret"}
LOGIN = {"auth_type": "login", "user_id": "101_1111112", "password": "pw"}
GOOD = {"credentials": TOKEN, "start_date": "2024-01-01T00:00:00Z"}


def parse(**overrides):
    return TelecmiConfig.parse({**GOOD, **overrides}, sync_started_at=JAN_1 + 10 * DAY_MS)


def reason(**overrides):
    with pytest.raises(ConfigError) as error:
        parse(**overrides)
    message = error.value.message
    assert "\n" not in message
    return message


def test_defaults():
    config = parse()
    assert config.start == JAN_1
    assert config.end == JAN_1 + 10 * DAY_MS  # the sync's start
    assert config.lookback_ms == DAY_MS
    assert config.lookback_days == 1
    assert config.num_workers == 8
    assert config.region == "global"
    assert config.api_url == "https://rest.telecmi.com"
    assert (config.credentials.kind, config.credentials.token) == ("token", "abc-token")


def test_explicit_values():
    config = parse(end_date="2024-01-05", lookback_window_days=0, num_workers=32)
    assert config.end == JAN_1 + 4 * DAY_MS
    assert (config.lookback_ms, config.num_workers) == (0, 32)


@pytest.mark.parametrize("start", ["2024-01-01", "2024-01-01T00:00:00.000Z", "2024-01-01T00:00:00+00:00"])
def test_every_documented_date_form(start):
    assert parse(start_date=start).start == JAN_1


# ------------------------------------------------------------------------------------------ credentials


@pytest.mark.parametrize("app_id", [1111112, "1111112", " 1111112 "])
def test_app_credentials_take_an_app_id_as_a_number_or_digits(app_id):
    credentials = parse(credentials={**APP, "app_id": app_id}).credentials
    assert (credentials.kind, credentials.app_id, credentials.app_secret) == ("app", 1111112, "s3cret")


def test_app_secret_is_trimmed():
    assert parse(credentials={**APP, "app_secret": "  s3cret\n"}).credentials.app_secret == "s3cret"


@pytest.mark.parametrize("app_id", ["abc", "12a", "", 0, -5, True, None, 1.5, [1]])
def test_a_bad_app_id_is_named(app_id):
    message = reason(credentials={**APP, "app_id": app_id})
    assert message.startswith("credentials.app_id ")


@pytest.mark.parametrize("app_id", ["9876543x", "-9876543", -9876543])
def test_a_bad_app_id_is_never_echoed(app_id):
    # The app id is a secret in the spec: its value stays out of the reason (it once said "got ...").
    message = reason(credentials={**APP, "app_id": app_id})
    assert "9876543" not in message and "got" not in message


@pytest.mark.parametrize(
    "credentials, upgraded_id",
    [
        ({**APP, "app_id": 1111112}, "1111112"),
        ({**APP, "app_id": "1111112"}, "1111112"),
        ({**APP, "app_id": True}, True),  # not a number to upgrade: the checks name it
        (TOKEN, None),
    ],
)
def test_an_app_id_saved_as_a_number_is_upgraded_to_its_digits(credentials, upgraded_id):
    config = {**GOOD, "credentials": credentials}
    out = upgraded(config)
    assert out["credentials"].get("app_id") == upgraded_id
    assert config["credentials"] is credentials, "the config given is not changed"
    assert upgraded({"start_date": "2024-01-01"}) == {"start_date": "2024-01-01"}
    assert upgraded({"credentials": "abc"}) == {"credentials": "abc"}


@pytest.mark.parametrize(
    "region, credentials, platform",
    [("global", TOKEN, USER), ("global", LOGIN, USER), ("global", APP, ACCOUNT), ("india", APP, INDIA)],
)
def test_the_platform_of_the_credentials_and_region(region, credentials, platform):
    assert parse(region=region, credentials=credentials).platform is PLATFORMS[platform]


@pytest.mark.parametrize("secret", ["", "   ", None, 123])
def test_a_missing_app_secret_is_named(secret):
    assert reason(credentials={**APP, "app_secret": secret}).startswith("credentials.app_secret ")


def test_login_credentials():
    credentials = parse(credentials={**LOGIN, "user_id": " 101_1111112 "}).credentials
    assert (credentials.kind, credentials.user_id, credentials.password) == ("login", "101_1111112", "pw")


def test_a_password_is_kept_as_typed():
    assert parse(credentials={**LOGIN, "password": " p w "}).credentials.password == " p w "


def test_token_is_trimmed():
    assert parse(credentials={**TOKEN, "token": " abc-token \n"}).credentials.token == "abc-token"


@pytest.mark.parametrize(
    "credentials, text",
    [
        ({"auth_type": "token", "token": " "}, "credentials.token is empty"),
        ({"auth_type": "login", "user_id": "101_1"}, "credentials.password is empty"),
        ({"auth_type": "login", "password": "pw"}, "credentials.user_id is empty"),
        ({"auth_type": "oauth"}, "credentials.auth_type must be 'app', 'login' or 'token'"),
        ({}, "credentials.auth_type"),
        (None, "credentials are missing"),
        ("abc", "credentials are missing"),
    ],
)
def test_bad_credentials_are_named(credentials, text):
    assert text in reason(credentials=credentials)


@pytest.mark.parametrize(
    "credentials",
    [
        {"auth_type": "login", "user_id": "", "password": "hunter2-pw"},
        {"auth_type": "app", "app_id": "x", "app_secret": "hunter2-pw"},
    ],
)
def test_a_secret_is_never_in_a_reason_and_is_masked_from_then_on(credentials):
    assert "hunter2-pw" not in reason(credentials=credentials)
    assert "hunter2-pw" not in filter_secrets("echoed: hunter2-pw")
    assert mask("echoed: hunter2-pw") == "echoed: ****"


def test_every_secret_of_a_good_config_is_masked():
    parse(credentials={**APP, "app_secret": "app-s3cret-1"})
    parse(credentials={**LOGIN, "password": 'p"w ö'})
    assert filter_secrets('app-s3cret-1 {"password": "p\\"w \\u00f6"}') == '**** {"password": "****"}'
    assert mask('app-s3cret-1 {"password": "p\\"w \\u00f6"}') == '**** {"password": "****"}'
    assert mask("cut by an echo: app-s3cre") == "cut by an echo: ****"


def test_a_token_is_masked_from_then_on():
    parse(credentials={**TOKEN, "token": "tok-en-value-77"})
    assert mask("token tok-en-value-77") == "token ****"


# ------------------------------------------------------------------------------------------------ region


def test_region_defaults_to_global_and_india_has_its_own_host():
    assert parse().api_url == "https://rest.telecmi.com"
    india = parse(region="india", credentials=APP)
    assert (india.region, india.api_url) == ("india", "https://piopiy.telecmi.com")


def test_api_url_overrides_the_region_host():
    assert parse(region="india", credentials=APP, api_url="http://127.0.0.1:8080/").api_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize("credentials", [TOKEN, LOGIN])
def test_india_needs_the_app_credentials(credentials):
    message = reason(region="india", credentials=credentials)
    assert "Indian platform" in message and "app id and app secret" in message


def test_an_unknown_region_is_named():
    assert "region must be 'global' or 'india', got 'eu'" in reason(region="eu")


# ------------------------------------------------------------------------------------------------ bounds


@pytest.mark.parametrize(
    "overrides, text",
    [
        ({"num_workers": 0}, "num_workers must be from 1 to 32, got 0"),
        ({"num_workers": 33}, "num_workers must be from 1 to 32, got 33"),
        ({"num_workers": "8"}, "num_workers must be a whole number from 1 to 32"),
        ({"num_workers": 2.5}, "num_workers must be a whole number"),
        ({"num_workers": True}, "num_workers must be a whole number"),
        ({"lookback_window_days": -1}, "lookback_window_days must be from 0 to 3650, got -1"),
        ({"lookback_window_days": 3651}, "lookback_window_days must be from 0 to 3650"),
        ({"lookback_window_days": "1"}, "lookback_window_days must be a whole number"),
    ],
)
def test_bounds_are_named(overrides, text):
    assert text in reason(**overrides)


def test_bounds_are_inclusive():
    assert parse(num_workers=1, lookback_window_days=3650).num_workers == 1
    assert parse(num_workers=32, lookback_window_days=0).num_workers == 32


# ------------------------------------------------------------------------------------------------ api_url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "https://proxy.example/telecmi/"]
)
def test_http_only_for_loopback(url):
    assert parse(api_url=url).api_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url, text",
    [
        ("http://rest.telecmi.com", "must use https"),
        ("http://10.0.0.1", "must use https"),
        ("ftp://x", "is not a URL"),
        ("rest.telecmi.com", "is not a URL"),
        ("https://", "is not a URL"),
        (42, "api_url must be a URL"),
    ],
)
def test_bad_api_url_is_named(url, text):
    assert text in reason(api_url=url)


# -------------------------------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    "overrides, text",
    [
        ({"start_date": "2024/01/01"}, "start_date '2024/01/01' is not a date in the form YYYY-MM-DD"),
        ({"start_date": None}, "start_date None is not a date"),
        ({"end_date": "soon"}, "end_date 'soon' is not a date"),
        ({"end_date": "2024-02-30"}, "end_date '2024-02-30' is not a real date"),
        ({"end_date": "2023-12-31T00:00:00Z"}, "end_date 2023-12-31T00:00:00.000Z is before start_date"),
        ({"start_date": "2024-02-01T00:00:00Z"}, "start_date 2024-02-01T00:00:00.000Z is in the future"),
    ],
)
def test_bad_dates_are_named(overrides, text):
    assert text in reason(**overrides)


def test_an_end_date_left_out_reads_up_to_the_sync():
    assert parse().end == JAN_1 + 10 * DAY_MS


# ------------------------------------------------------------------ text that once crashed or slipped by


@pytest.mark.parametrize("app_id", [" 1111112 ", "\t1111112\n", "\u00a01111112", "0001111112"])
def test_an_app_id_with_spaces_around_or_leading_zeros_is_its_number(app_id):
    assert parse(credentials={**APP, "app_id": app_id}).credentials.app_id == 1111112


@pytest.mark.parametrize(
    "app_id",
    [
        "1111112\u00b2",  # a superscript two: str.isdigit() says digit, int() raises
        "\uff11\uff11\uff11\uff11\uff11\uff11\uff12",  # fullwidth digits: int() reads them, TeleCMI would not
        "\u0661\u0661\u0661\u0661\u0661\u0661\u0662",  # Arabic-Indic digits
        "0",
        "000",
        "  ",
        "11 11",
        "+1111112",
        "1_111_112",
        "1111112.0",
        1111112.0,
        {"id": 1111112},
        "1" * 5000,  # int() refuses more than 4,300 digits: it crashed check
        "1" * 65,
        10**70,
        pytest.param(10**5000, id="10**5000"),
    ],
)
def test_an_app_id_that_is_not_ascii_digits_is_a_config_error_naming_it(app_id):
    assert reason(credentials={**APP, "app_id": app_id}).startswith("credentials.app_id ")


@pytest.mark.parametrize("field", ["num_workers", "lookback_window_days"])
def test_a_whole_number_written_with_a_point_is_that_number_as_the_spec_reads_it(field):
    config = parse(**{field: 3.0})
    assert (config.num_workers if field == "num_workers" else config.lookback_days) == 3
    assert type(config.num_workers) is int and type(config.lookback_days) is int


@pytest.mark.parametrize("field", ["num_workers", "lookback_window_days"])
@pytest.mark.parametrize(
    "value", ["8", "\uff18", " 8", 8.5, float("nan"), float("inf"), True, [8], {"n": 8}, 1e300, 10**400]
)
def test_a_number_that_is_no_whole_number_in_range_is_named(field, value):
    message = reason(**{field: value})
    assert message.startswith(f"{field} must be ")
    assert len(message) < 200


@pytest.mark.parametrize(
    "field, value",
    [
        ("end_date", None),
        ("num_workers", None),
        ("lookback_window_days", None),
        ("region", None),
        ("api_url", None),
    ],
)
def test_an_optional_field_given_as_null_is_named_as_the_spec_refuses_it(field, value):
    assert reason(**{field: value}).startswith(f"{field} is null: leave it out")


@pytest.mark.parametrize("end_date", ["", "  "])
def test_an_empty_end_date_is_named_as_the_spec_refuses_it(end_date):
    assert reason(end_date=end_date).startswith("end_date ")


@pytest.mark.parametrize("region", ["", "Global", " india", 1, ["global"]])
def test_a_region_that_is_not_one_of_the_two_is_named(region):
    assert reason(region=region).startswith("region must be 'global' or 'india'")


@pytest.mark.parametrize(
    "field, value",
    [
        ("start_date", "0001-01-01T00:00+01:00"),  # year 0 in UTC
        ("start_date", "1969-12-31T23:59:59Z"),
        ("start_date", "9999-12-31T23:59-01:00"),  # year 10000 in UTC
        ("end_date", "9999-12-31T23:59-01:00"),
    ],
)
def test_a_date_outside_1970_to_9999_utc_is_named(field, value):
    assert f"{field} '{value}' is out of range" in reason(**{field: value})


def test_the_first_and_last_instants_of_the_range_are_dates():
    assert parse(start_date="1970-01-01").start == 0
    assert parse(end_date="9999-12-31T23:59:59.999Z").end == JAN_1 + 10 * DAY_MS  # and read up to now


@pytest.mark.parametrize("field", ["start_date", "end_date"])
@pytest.mark.parametrize("value", [17, 1704067200000, True, {"date": "2024-01-01"}, ["2024-01-01"], "x" * 5000])
def test_a_date_that_is_no_text_date_is_named_on_one_short_line(field, value):
    message = reason(**{field: value})
    assert message.startswith(f"{field} ") and len(message) < 400


def test_an_end_date_ahead_reads_up_to_the_moment_the_sync_starts():
    assert parse(end_date="2024-06-01").end == JAN_1 + 10 * DAY_MS


def test_a_start_date_ahead_with_an_end_date_after_it_reads_nothing_that_has_not_happened():
    config = parse(start_date="2024-02-01", end_date="2024-03-01")
    assert config.end == config.start == JAN_1 + 31 * DAY_MS


@pytest.mark.parametrize("url", ["", "   ", "\t"])
def test_an_empty_api_url_is_the_platforms_own(url):
    assert parse(api_url=url).api_url == "https://rest.telecmi.com"


@pytest.mark.parametrize(
    "url, text",
    [
        ("https://proxy.example/telecmi?key=1", "has a query or a fragment"),
        ("https://proxy.example/#top", "has a query or a fragment"),
        ("https://proxy.example:99999", "has a port that is not a number"),
        ("https://proxy.example:port", "has a port that is not a number"),
        ("https://exa mple.com", "is not a URL"),
        ("https://:8080", "it has no host"),
        (["https://rest.telecmi.com"], "api_url must be a URL"),
    ],
)
def test_an_api_url_that_cannot_be_asked_is_named(url, text):
    message = reason(api_url=url)
    assert message.startswith("api_url ") and text in message


@pytest.mark.parametrize(
    "credentials",
    [
        {**APP, "app_secret": "\u3000"},
        {**TOKEN, "token": "\u2028"},
        {**LOGIN, "user_id": " \n"},
        {**LOGIN, "password": ""},
    ],
)
def test_a_blank_text_credential_is_named(credentials):
    assert reason(credentials=credentials).startswith("credentials.")


def test_a_config_that_is_not_an_object_is_a_config_error():
    with pytest.raises(ConfigError, match="not an object of settings"):
        TelecmiConfig.parse(["start_date"])  # type: ignore[arg-type]


BAD_VALUES = [None, True, 0, -1, 1.5, float("nan"), "", " ", "\u00b2", "x" * 3000, [], {}, ["a"], {"a": 1}]


@pytest.mark.parametrize(
    "path", ["start_date", "end_date", "num_workers", "lookback_window_days", "region", "api_url", "credentials"]
)
@pytest.mark.parametrize("value", BAD_VALUES, ids=[repr(v)[:20] for v in BAD_VALUES])
def test_any_value_of_any_field_is_read_or_named_never_a_crash(path, value):
    try:
        parse(**{path: value})
    except ConfigError as error:
        assert "\n" not in error.message and len(error.message) < 400
        assert path.split("_")[0] in error.message or path == "credentials"


@pytest.mark.parametrize("auth", [APP, TOKEN, LOGIN])
@pytest.mark.parametrize("value", BAD_VALUES, ids=[repr(v)[:20] for v in BAD_VALUES])
def test_any_value_of_any_credential_field_is_read_or_named_never_a_crash(auth, value):
    for name in [key for key in auth if key != "auth_type"] + ["auth_type"]:
        try:
            parse(credentials={**auth, name: value})
        except ConfigError as error:
            assert "\n" not in error.message and len(error.message) < 400
            assert error.message.startswith("credentials")


@pytest.mark.parametrize("field", ["lookback_window_days", "num_workers"])
def test_the_defaults_and_bounds_of_whole_numbers_are_the_specs(monkeypatch, field):
    """spec.json owns them: change the spec's and the parser follows."""
    import source_telecmi.config as config_module

    spec = {**config_module.FIELDS[field], "default": 3, "minimum": 2, "maximum": 5}
    monkeypatch.setitem(config_module.FIELDS, field, spec)
    attribute = {"lookback_window_days": "lookback_days", "num_workers": "num_workers"}[field]
    assert getattr(parse(), attribute) == 3
    assert getattr(parse(**{field: 5}), attribute) == 5
    assert reason(**{field: 6}) == f"{field} must be from 2 to 5, got 6"
    assert reason(**{field: 1}) == f"{field} must be from 2 to 5, got 1"


def test_the_lookback_is_kept_in_days_and_given_in_milliseconds_from_them():
    settings = parse(lookback_window_days=3)
    assert (settings.lookback_days, settings.lookback_ms) == (3, 3 * DAY_MS)
