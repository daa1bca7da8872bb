"""The config is checked once, with a one-line reason naming what is wrong."""

import pytest

from source_telecmi.config import ConfigError, TelecmiConfig
from source_telecmi.timeline import DAY_MS

GOOD = {"credentials": {"auth_type": "token", "token": "abc"}, "start_date": "2024-01-01T00:00:00Z"}
JAN_1 = 1704067200000


def parse(**overrides):
    return TelecmiConfig.parse({**GOOD, **overrides}, sync_started_at=JAN_1 + 10 * DAY_MS)


def test_defaults():
    config = parse()
    assert config.start == JAN_1
    assert config.end == JAN_1 + 10 * DAY_MS  # the sync's start
    assert config.lookback_ms == DAY_MS
    assert config.num_workers == 4
    assert config.api_url == "https://rest.telecmi.com"
    assert config.credentials.token == "abc" and not config.credentials.logs_in


def test_login_credentials():
    config = parse(credentials={"auth_type": "login", "user_id": " 101_1111112 ", "password": "pw"})
    assert config.credentials.logs_in
    assert config.credentials.user_id == "101_1111112"


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"start_date": "2024-01-01"}, "start_date '2024-01-01' is not a UTC date"),
        ({"end_date": "2023-12-31T00:00:00Z"}, "end_date 2023-12-31T00:00:00.000Z is before start_date"),
        ({"start_date": "2024-02-01T00:00:00Z"}, "start_date 2024-02-01T00:00:00.000Z is in the future"),
        ({"num_workers": 33}, "num_workers must be from 1 to 32, got 33"),
        ({"num_workers": "8"}, "num_workers must be a whole number"),
        ({"lookback_window_days": -1}, "lookback_window_days must be from 0 to 3650"),
        ({"api_url": "http://rest.telecmi.com"}, "must use https"),
        ({"api_url": "ftp://x"}, "is not a URL"),
        ({"credentials": {"auth_type": "token", "token": " "}}, "credentials.token is empty"),
        ({"credentials": {"auth_type": "login", "user_id": "101_1"}}, "credentials.password is empty"),
        ({"credentials": {"auth_type": "oauth"}}, "auth_type must be 'token' or 'login'"),
        ({"credentials": None}, "credentials are missing"),
    ],
)
def test_bad_config_has_a_one_line_reason(overrides, reason):
    with pytest.raises(ConfigError) as error:
        parse(**overrides)
    assert reason in error.value.message
    assert "\n" not in error.value.message


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "https://proxy.example/telecmi/"]
)
def test_http_only_for_loopback(url):
    assert parse(api_url=url).api_url == url.rstrip("/")


def test_a_secret_is_never_in_a_reason():
    with pytest.raises(ConfigError) as error:
        parse(credentials={"auth_type": "login", "user_id": "", "password": "hunter2"})
    assert "hunter2" not in error.value.message
