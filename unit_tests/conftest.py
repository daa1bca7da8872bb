"""Unit tests run without real waits between retries."""

import pytest


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch):
    monkeypatch.setenv("SOURCE_TELECMI_BACKOFF_SCALE", "0.001")
