"""The `source-telecmi` console script."""

import sys

from airbyte_cdk.entrypoint import launch

from source_telecmi.source import SourceTelecmi


def run() -> None:
    """Run the connector with the Airbyte protocol arguments given on the command line."""
    launch(SourceTelecmi(), sys.argv[1:])
