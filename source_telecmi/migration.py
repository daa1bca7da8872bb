"""A config saved by an older version, migrated once to the spec's current types.

Version 0.2 saved `credentials.app_id` as a number; 0.3 declares it a string of digits (spec.json),
and whatever checks a config against the spec before the connector runs refuses the number.
`SourceTelecmi.configure` reads the old form in memory (`config.upgraded`); this migration makes
the change stick, as the CDK's config migrations do, before check, discover or read runs:

- the upgraded config is written back to the `--config` file, so the next run finds nothing to migrate;
- it is emitted as a CONTROL message of type CONNECTOR_CONFIG, which the platform stores as the
  connection's config. The message holds the whole config, secrets included and unmasked: the
  platform stores what it is given, so a masked secret would be stored as the mask. It is printed
  by `run.MaskedStream.print_config_control`, the one way a line other than a record or a state
  leaves the process unmasked;
- one log line says in words what changed, naming fields, never their values.

A config is migrated only when the upgrade changes it and the upgraded config is valid against the
spec: a config wrong in some other way is left as it is (its run fails naming the field; the first
run after the fix migrates it), so the platform never stores a config the spec refuses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Optional

from airbyte_cdk.config_observation import create_connector_config_control_message
from airbyte_cdk.connector import BaseConnector
from airbyte_cdk.models import AirbyteMessage
from jsonschema import Draft7Validator

from source_telecmi.config import SPEC, upgraded

MIGRATED_COMMANDS = frozenset({"check", "discover", "read"})  # those given a config (spec is not)
JSON_TYPES = (
    (bool, "boolean"),
    (str, "string"),
    (int, "number"),
    (float, "number"),
    (Mapping, "object"),
    (list, "array"),
)


def migrated(config: Any) -> Optional[dict[str, Any]]:
    """The config as the platform must store it now, or None when there is nothing to migrate.

    None too when the upgraded config is still not valid against the spec (see the module's doc).
    """
    if not isinstance(config, Mapping):
        return None
    new = upgraded(config)
    if new == config:
        return None
    if next(Draft7Validator(SPEC).iter_errors(new), None) is not None:
        return None
    return new


def changes(old: Any, new: Any, path: str = "") -> list[str]:
    """What differs from `old` to `new`, in words: `credentials.app_id is now a string (it was saved as a number)`.

    Names fields and JSON types only, never a value: the values changed are secrets.
    """
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        found = []
        for key, value in new.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in old:
                found.append(f"{where} is added")
            else:
                found.extend(changes(old[key], value, where))
        return found
    if type(old) is type(new) and old == new:
        return []
    if _json_type(old) != _json_type(new):
        return [f"{path} is now a {_json_type(new)} (it was saved as a {_json_type(old)})"]
    return [f"{path} is changed"]


def _json_type(value: Any) -> str:
    return next((name for kind, name in JSON_TYPES if isinstance(value, kind)), "null")


def migrate(config_path: Optional[str], emit: Callable[[AirbyteMessage], None], logger: logging.Logger) -> bool:
    """Migrate the config at `config_path` if it needs it: write it back, `emit` its CONTROL message, log one line.

    Returns whether it migrated. A file that cannot be read or is no JSON object is left to the
    entrypoint, which reports it; a file that cannot be written back is restored and named in the
    log line (this run reads the upgraded config in memory anyway, and the platform stores the
    CONTROL message's).
    """
    if not config_path:
        return False
    try:
        text = Path(config_path).read_text(encoding="utf-8")
        config = BaseConnector.read_config(config_path)
    except (OSError, ValueError):
        return False
    new = migrated(config)
    if new is None:
        return False
    not_written = _write_back(config_path, new, text)
    emit(create_connector_config_control_message(new))
    what = "; ".join(changes(config, new))
    if not_written is None:
        logger.info(
            f"The saved config was updated for this version of the connector: {what}, as the spec declares it. "
            "The updated config is sent for Airbyte to store and written back to the config file."
        )
    else:
        logger.warning(
            f"The saved config was updated for this version of the connector: {what}, as the spec declares it. "
            f"The updated config is sent for Airbyte to store, but the config file could not be rewritten "
            f"({not_written}): this run uses the updated config, and the next run with this file updates it again."
        )
    return True


def _write_back(config_path: str, config: Mapping[str, Any], original: str) -> Optional[str]:
    """Write `config` to its file, as the CDK's migrations do; None when written, else why not (the file restored)."""
    try:
        BaseConnector.write_config(config, config_path)
        return None
    except OSError as error:
        try:
            if Path(config_path).read_text(encoding="utf-8") != original:
                Path(config_path).write_text(original, encoding="utf-8")
        except OSError:
            pass
        return f"{type(error).__name__}: {error.strerror or error}"
