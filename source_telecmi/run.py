"""The `source-telecmi` console script: the CDK's entrypoint, with config errors that name their field."""

import sys
from collections.abc import Mapping
from typing import Any

from airbyte_cdk.entrypoint import AirbyteEntrypoint
from airbyte_cdk.logger import PRINT_BUFFER
from airbyte_cdk.models import ConnectorSpecification
from airbyte_cdk.utils.airbyte_secrets_utils import filter_secrets
from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match

from source_telecmi.config import ConfigError, TelecmiConfig
from source_telecmi.source import SourceTelecmi

RECORD = '{"type":"RECORD"'


class TelecmiEntrypoint(AirbyteEntrypoint):
    """The CDK's entrypoint, whose config validation says which field is wrong and how to fix it.

    The CDK's own check against the spec reports a raw schema message ("0 is less than the minimum
    of 1"); the connector's config checks run first and name the field, then the spec is checked
    with the field's path in the message.
    """

    @staticmethod
    def validate_connection(source_spec: ConnectorSpecification, config: Mapping[str, Any]) -> None:
        TelecmiConfig.parse(config)
        error = best_match(Draft7Validator(source_spec.connectionSpecification).iter_errors(dict(config)))
        if error is not None:
            where = ".".join(str(part) for part in error.absolute_path) or "the config"
            raise ConfigError(f"{where}: {error.message}")


def run() -> None:
    """Run the connector with the Airbyte protocol arguments given on the command line."""
    entrypoint = TelecmiEntrypoint(SourceTelecmi())
    parsed = entrypoint.parse_args(sys.argv[1:])
    with PRINT_BUFFER:
        for message in entrypoint.run(parsed):
            # Every line but records, not only the CDK's logs: TeleCMI may echo a secret into an error
            # that this connector (or the CDK's concurrent reader) puts in a TRACE message unfiltered.
            # Records carry no secret (users' passwords are dropped) and are never rewritten: a
            # short password masked inside an agent id would corrupt the record.
            print(f"{message if message.startswith(RECORD) else filter_secrets(message)}\n", end="")
