"""Unit tests run without real waits between retries, and leave the CDK's secret list as they found it."""

import itertools
import logging
import time
from types import SimpleNamespace

import pytest
from airbyte_cdk.sources.streams.http import rate_limiting
from airbyte_cdk.test.mock_http import HttpMocker
from airbyte_cdk.utils import airbyte_secrets_utils

_real_sleep = time.sleep


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch):
    monkeypatch.setenv("SOURCE_TELECMI_BACKOFF_SCALE", "0.001")
    # The CDK sleeps one second more than every backoff the connector asks for ("to cover fractions of
    # a second"); the connector's scale cannot shorten that, so the tests do.
    monkeypatch.setattr(rate_limiting, "time", SimpleNamespace(sleep=lambda seconds: _real_sleep(seconds / 1000)))


@pytest.fixture(autouse=True)
def _secrets_restored():
    """Secrets registered by one test must not mask the text another test looks for."""
    saved = list(getattr(airbyte_secrets_utils, "__SECRETS_FROM_CONFIG"))
    yield
    airbyte_secrets_utils.update_secrets(saved)


@pytest.fixture
def http_mocker():
    """The CDK's HttpMocker; at the end, every request it was told about must have been asked."""
    with HttpMocker() as mocker:
        yield mocker
        mocker._validate_all_matchers_called()


_loggers = itertools.count()


class Log:
    """A logger of its own, DEBUG on, and every record it got."""

    def __init__(self) -> None:
        self.logger = logging.getLogger(f"unit_tests.log{next(_loggers)}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.records: list[logging.LogRecord] = []
        keep = logging.Handler(level=logging.DEBUG)
        keep.emit = self.records.append
        self.logger.addHandler(keep)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]

    def warnings(self) -> list[str]:
        return self.messages(logging.WARNING)


@pytest.fixture
def log():
    return Log()
