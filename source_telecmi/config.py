"""The connector's configuration, checked once, with a one-line reason for anything wrong."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.credentials import Credentials
from source_telecmi.platforms import REGIONS, Platform, platform_for
from source_telecmi.secrets import register_secret
from source_telecmi.timeline import days_ms, format_ms, now_ms, parse_utc

API_URLS = REGIONS
DEFAULT_API_URL = API_URLS["global"]
DEFAULT_LOOKBACK_DAYS = 1
# The ceiling of requests in flight: the connector comes down from it by itself under a rate limit.
DEFAULT_NUM_WORKERS = 8
MOST_WORKERS = 32
MOST_LOOKBACK_DAYS = 3650


class ConfigError(AirbyteTracedException):
    """A configuration the connector cannot run with; the message is the one-line reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(message=reason, internal_message=reason, failure_type=FailureType.config_error)


@dataclass(frozen=True)
class TelecmiConfig:
    """What a sync needs to know, in the connector's own units (epoch ms)."""

    credentials: Credentials
    start: int
    end: int
    lookback_ms: int
    api_url: str
    num_workers: int
    region: str = "global"
    lookback_days: int = 0

    @property
    def platform(self) -> Platform:
        """The platform these credentials read in this region."""
        return platform_for(self.region, self.credentials.kind)

    @classmethod
    def parse(cls, config: Mapping[str, Any], sync_started_at: Optional[int] = None) -> TelecmiConfig:
        """Check and convert a config; raises ConfigError naming the first problem."""
        try:
            start = parse_utc(config.get("start_date"), "start_date")
            end_date = config.get("end_date")
            end = parse_utc(end_date, "end_date") if end_date else (sync_started_at or now_ms())
        except ValueError as bad_date:
            raise ConfigError(str(bad_date)) from None
        if end < start and end_date:
            raise ConfigError(f"end_date {format_ms(end)} is before start_date {format_ms(start)}")
        if end < start:
            raise ConfigError(f"start_date {format_ms(start)} is in the future: no call to read yet")
        lookback_days = _whole_number(config, "lookback_window_days", DEFAULT_LOOKBACK_DAYS, 0, MOST_LOOKBACK_DAYS)
        num_workers = _whole_number(config, "num_workers", DEFAULT_NUM_WORKERS, 1, MOST_WORKERS)
        region = config.get("region") or "global"
        if region not in API_URLS:
            raise ConfigError(f"region must be 'global' or 'india', got {region!r}")
        credentials = _credentials(config.get("credentials"))
        try:
            platform_for(region, credentials.kind)
        except KeyError as not_served:
            raise ConfigError(f"credentials: {not_served.args[0]}") from None
        return cls(
            credentials=credentials,
            start=start,
            end=end,
            lookback_ms=days_ms(lookback_days),
            lookback_days=lookback_days,
            api_url=_api_url(config.get("api_url") or API_URLS[region]),
            num_workers=num_workers,
            region=region,
        )


def upgraded(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config in the spec's current types: an `app_id` saved as a number (as 0.2 allowed) becomes its digits."""
    out = dict(config)
    credentials = out.get("credentials")
    app_id = credentials.get("app_id") if isinstance(credentials, Mapping) else None
    if isinstance(app_id, int) and not isinstance(app_id, bool):
        out["credentials"] = {**credentials, "app_id": str(app_id)}
    return out


def _whole_number(config: Mapping[str, Any], field: str, default: int, low: int, high: int) -> int:
    value = config.get(field, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field} must be a whole number from {low} to {high}, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{field} must be from {low} to {high}, got {value}")
    return value


def _credentials(credentials: Any) -> Credentials:
    """The credentials, checked; every secret in them is masked in all output from here on."""
    if not isinstance(credentials, Mapping):
        raise ConfigError("credentials are missing: give an app id and app secret, a user login, or a user token")
    for field in ("token", "password", "app_secret", "app_id"):  # those the spec marks secret
        register_secret(credentials.get(field))
    auth_type = credentials.get("auth_type")
    if auth_type == "app":
        app_id, secret = credentials.get("app_id"), credentials.get("app_secret")
        if isinstance(app_id, str) and app_id.strip().isdigit():
            app_id = int(app_id.strip())
        if isinstance(app_id, bool) or not isinstance(app_id, int) or app_id <= 0:
            raise ConfigError("credentials.app_id must be the app's number, digits only, like 1111112")
        if not isinstance(secret, str) or not secret.strip():
            raise ConfigError("credentials.app_secret is empty: paste the app secret from the TeleCMI dashboard")
        return Credentials(kind="app", app_id=app_id, app_secret=secret.strip())
    if auth_type == "token":
        token = credentials.get("token")
        if not isinstance(token, str) or not token.strip():
            raise ConfigError("credentials.token is empty: paste the TeleCMI user token")
        return Credentials(kind="token", token=token.strip())
    if auth_type == "login":
        user_id, password = credentials.get("user_id"), credentials.get("password")
        if not isinstance(user_id, str) or not user_id.strip():
            raise ConfigError("credentials.user_id is empty: give the user id, like 101_1111112")
        if not isinstance(password, str) or not password:
            raise ConfigError("credentials.password is empty")
        return Credentials(kind="login", user_id=user_id.strip(), password=password)
    raise ConfigError(f"credentials.auth_type must be 'app', 'login' or 'token', got {auth_type!r}")


def _api_url(url: Any) -> str:
    if not isinstance(url, str):
        raise ConfigError(f"api_url must be a URL like {DEFAULT_API_URL}")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"api_url {url!r} is not a URL like {DEFAULT_API_URL}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"api_url {url!r} must use https: credentials never travel in clear (http is allowed only for a loopback host)"
        )
    return url.strip().rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
