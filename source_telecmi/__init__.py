"""Airbyte source connector for TeleCMI call detail records."""

from source_telecmi.source import SourceTelecmi

__all__ = ["SourceTelecmi"]
