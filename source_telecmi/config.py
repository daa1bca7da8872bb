"""The connector's configuration, checked once, with a one-line reason for anything wrong.

The parser and spec.json agree on every field: what the spec's types and patterns admit, the
parser reads, and what they turn away, the parser turns away naming the field. Only rules no
pattern can say are the parser's alone, named as well: a calendar day that does not exist, a date
outside 1970 to 9999 (UTC), plain http to a host that is not loopback, a URL without a host.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.secrets import one_line, register_secret
from source_telecmi.telecmi.credentials import Credentials
from source_telecmi.telecmi.platforms import REGIONS, Platform, platform_for
from source_telecmi.timeline.instants import days_ms, format_ms, now_ms, parse_utc

API_URLS = REGIONS
DEFAULT_API_URL = API_URLS["global"]
# spec.json owns every default, bound and pattern; the parser reads them from it, so the two cannot disagree.
SPEC: dict[str, Any] = json.loads((Path(__file__).parent / "spec.json").read_text())["connectionSpecification"]
FIELDS: dict[str, Any] = SPEC["properties"]
APP_FIELDS: dict[str, Any] = next(
    o["properties"] for o in FIELDS["credentials"]["oneOf"] if o["properties"]["auth_type"]["const"] == "app"
)
# The spec's patterns, read with Python's `re` as the spec's validator reads them: `\s` is exactly what
# `str.strip()` removes.
APP_ID_PATTERN: str = APP_FIELDS["app_id"]["pattern"]
APP_ID_MOST_CHARS: int = APP_FIELDS["app_id"]["maxLength"]  # Python's int() refuses more than 4,300 digits
NOT_BLANK_PATTERN: str = APP_FIELDS["app_secret"]["pattern"]
API_URL_PATTERN: str = FIELDS["api_url"]["pattern"]
# TeleCMI's times are epoch milliseconds: a date before the epoch or past year 9999 is no date to read from.
EARLIEST_MS = 0
LATEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


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
    api_url: str
    num_workers: int
    region: str = "global"
    lookback_days: int = 0  # the one unit of the lookback, as the user gave it
    recording_pending_days: int = 7  # how long a recording not yet published is asked for again

    @property
    def lookback_ms(self) -> int:
        """The lookback window, for the millisecond arithmetic of windows."""
        return days_ms(self.lookback_days)

    @property
    def platform(self) -> Platform:
        """The platform these credentials read in this region."""
        return platform_for(self.region, self.credentials.kind)

    @classmethod
    def parse(cls, config: Mapping[str, Any], sync_started_at: Optional[int] = None) -> TelecmiConfig:
        """Check and convert a config; raises ConfigError naming the first problem.

        `end` is the newest instant a sync reads: end_date, but never past the moment the sync
        starts (`sync_started_at`, else now), so nothing not yet happened is read or checkpointed.
        """
        if not isinstance(config, Mapping):
            raise ConfigError(f"The config is a JSON {type(config).__name__}, not an object of settings")
        now = sync_started_at or now_ms()
        start = _date(config.get("start_date"), "start_date")
        end_date = _optional(config, "end_date", "to read up to the moment each sync starts")
        end = _date(end_date, "end_date") if end_date is not None else now
        if end < start and end_date is not None:
            raise ConfigError(f"end_date {format_ms(end)} is before start_date {format_ms(start)}")
        if end < start:
            raise ConfigError(f"start_date {format_ms(start)} is in the future: no call to read yet")
        end = min(end, max(now, start))  # an end_date ahead: up to now (a start ahead: nothing happened yet)
        lookback_days = _whole_number(config, "lookback_window_days")
        num_workers = _whole_number(config, "num_workers")
        pending_days = _whole_number(config, "recording_pending_days")
        region = _optional(config, "region", "for the global platform")
        region = "global" if region is None else region
        if not isinstance(region, str) or region not in API_URLS:
            raise ConfigError(f"region must be 'global' or 'india', got {_shown(region)}")
        credentials = _credentials(config.get("credentials"))
        try:
            platform_for(region, credentials.kind)
        except KeyError as not_served:
            raise ConfigError(f"credentials: {not_served.args[0]}") from None
        return cls(
            credentials=credentials,
            start=start,
            end=end,
            lookback_days=lookback_days,
            api_url=_api_url(_optional(config, "api_url", "for the platform's own address"), API_URLS[region]),
            num_workers=num_workers,
            region=region,
            recording_pending_days=pending_days,
        )


def upgraded(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config in the spec's current types: an `app_id` saved as a number (as 0.2 allowed) becomes its digits."""
    out = dict(config)
    credentials = out.get("credentials")
    app_id = credentials.get("app_id") if isinstance(credentials, Mapping) else None
    if _whole(app_id):
        out["credentials"] = {**credentials, "app_id": str(app_id)}
    return out


def _whole(value: Any) -> bool:
    """An integer short enough to write in digits (str() refuses one of more than 4,300), not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 1024


def _shown(value: Any) -> str:
    """A value as a reason shows it: its repr, on one line, cut."""
    return one_line(repr(value), 80)


def _optional(config: Mapping[str, Any], field: str, default_is: str) -> Any:
    """An optional field's value, None if it is left out; null is refused, as the spec refuses it."""
    if field not in config:
        return None
    if config[field] is None:
        raise ConfigError(f"{field} is null: leave it out {default_is}")
    return config[field]


def _date(value: Any, field: str) -> int:
    """A config date as epoch ms: the spec's forms (parse_utc), a real calendar day, from 1970 to 9999 UTC."""
    try:
        instant = parse_utc(value, field)
    except ValueError as bad_date:
        raise ConfigError(one_line(str(bad_date), 300)) from None
    except (OverflowError, OSError):  # a form the pattern admits, past what a date can hold
        instant = LATEST_MS + 1
    if not EARLIEST_MS <= instant <= LATEST_MS:
        raise ConfigError(
            f"{field} {_shown(value)} is out of range: give a date from 1970-01-01 (TeleCMI's times are "
            "milliseconds since then) to 9999-12-31, UTC"
        )
    return instant


def _whole_number(config: Mapping[str, Any], field: str) -> int:
    """A whole number as the spec's `integer` reads it: 8 or 8.0, not "8", not true, not 8.5; the spec's
    default where it is left out, within the spec's minimum and maximum."""
    default, low, high = FIELDS[field]["default"], FIELDS[field]["minimum"], FIELDS[field]["maximum"]
    value = _optional(config, field, f"for the default, {default}")
    if value is None:
        return default
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field} must be a whole number from {low} to {high}, got {_shown(value)}")
    if not low <= value <= high:
        raise ConfigError(f"{field} must be from {low} to {high}, got {_shown(value)}")
    return value


def _filled(value: Any) -> bool:
    """Whether a text field holds something besides whitespace (the spec's NOT_BLANK_PATTERN)."""
    return isinstance(value, str) and re.search(NOT_BLANK_PATTERN, value) is not None


def _credentials(credentials: Any) -> Credentials:
    """The credentials, checked; every secret in them is masked in all output from here on."""
    if not isinstance(credentials, Mapping):
        raise ConfigError("credentials are missing: give an app id and app secret, a user login, or a user token")
    for field in ("token", "password", "app_secret", "app_id"):  # those the spec marks secret
        value = credentials.get(field)
        if isinstance(value, str) or _whole(value):  # an integer too long to write cannot be printed either
            register_secret(value)
    auth_type = credentials.get("auth_type")
    if auth_type == "app":
        app_id, secret = credentials.get("app_id"), credentials.get("app_secret")
        # Digits as the spec's pattern says (ASCII 0-9: "²" or "１" are digits to str.isdigit, not to TeleCMI);
        # an integer is 0.2's saved form, read as its digits (SourceTelecmi.configure turns it into them).
        if _whole(app_id):
            app_id = str(app_id)
        if not (isinstance(app_id, str) and len(app_id) <= APP_ID_MOST_CHARS and re.search(APP_ID_PATTERN, app_id)):
            raise ConfigError("credentials.app_id must be the app's number, digits only, like 1111112")
        app_id = int(app_id.strip())
        if not _filled(secret):
            raise ConfigError("credentials.app_secret is empty: paste the app secret from the TeleCMI dashboard")
        return Credentials(kind="app", app_id=app_id, app_secret=secret.strip())
    if auth_type == "token":
        token = credentials.get("token")
        if not _filled(token):
            raise ConfigError("credentials.token is empty: paste the TeleCMI user token")
        return Credentials(kind="token", token=token.strip())
    if auth_type == "login":
        user_id, password = credentials.get("user_id"), credentials.get("password")
        if not _filled(user_id):
            raise ConfigError("credentials.user_id is empty: give the user id, like 101_1111112")
        if not isinstance(password, str) or not password:
            raise ConfigError("credentials.password is empty")
        return Credentials(kind="login", user_id=user_id.strip(), password=password)
    raise ConfigError(f"credentials.auth_type must be 'app', 'login' or 'token', got {_shown(auth_type)}")


def _api_url(url: Any, default: str) -> str:
    """api_url as given (left out or blank: the region's address), an http(s) URL without query or fragment."""
    if url is None or (isinstance(url, str) and not url.strip()):
        return default
    if not isinstance(url, str):
        raise ConfigError(f"api_url must be a URL like {DEFAULT_API_URL}, got {_shown(url)}")
    if re.search(API_URL_PATTERN, url) is None:
        if re.search(API_URL_PATTERN, re.sub(r"[?#].*", "", url, flags=re.DOTALL)):
            raise ConfigError(f"api_url {_shown(url)} has a query or a fragment (? or #): give the base URL alone")
        raise ConfigError(f"api_url {_shown(url)} is not a URL like {DEFAULT_API_URL}")
    parts = urlsplit(url.strip())
    try:
        parts.port  # noqa: B018 - a port that is no number, or out of range, raises here
    except ValueError:
        raise ConfigError(f"api_url {_shown(url)} has a port that is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ConfigError(f"api_url {_shown(url)} is not a URL like {DEFAULT_API_URL}: it has no host")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"api_url {_shown(url)} must use https: credentials never travel in clear (http is allowed only for a "
            "loopback host)"
        )
    return url.strip().rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
