"""TeleCMI's platforms and lists as data: adding a list, or a platform, is adding rows here.

A `Platform` is a region and a kind of credentials: where the API is, where the credentials go in a
body, the body fields of a time window, the count field, and which codes mean success. A `ListRow`
is one list TeleCMI serves (a stream): its path and page size on each platform that has it, the
list key, the primary key, the cursor, and the constants the connector adds to its records. A
platform that lacks a list is simply absent from its row, and discover leaves the stream out.
No other module branches on the region or the kind of credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

USER, ACCOUNT, INDIA = "user", "account", "india"
APP_FIELDS = {"appid": "app_id", "secret": "app_secret"}


@dataclass(frozen=True)
class Platform:
    """A region and a kind of credentials."""

    name: str
    region: str
    base_url: str
    # body field -> what goes in it: "token" (the user token), "app_id" or "app_secret"
    credentials: Mapping[str, str]
    window_fields: tuple[str, str]  # the body fields of a window's first and last millisecond
    count_field: str  # where a page's answer carries the window's total
    success_codes: frozenset[Any] = frozenset({200})


PLATFORMS: dict[str, Platform] = {
    USER: Platform(USER, "global", "https://rest.telecmi.com", {"token": "token"}, ("from", "to"), "count"),
    ACCOUNT: Platform(ACCOUNT, "global", "https://rest.telecmi.com", APP_FIELDS, ("start_date", "end_date"), "count"),
    INDIA: Platform(
        INDIA,
        "india",
        "https://piopiy.telecmi.com",
        {"appid": "app_id", "token": "app_secret"},
        ("start_date", "end_date"),
        "total",
        frozenset({200, 2000}),  # "cmi-2000" is India's success
    ),
}
REGIONS = {platform.region: platform.base_url for platform in PLATFORMS.values()}


# (region, kind of credentials) -> platform; "user" stands for a token or a login.
PLATFORM_OF: dict[tuple[str, str], str] = {
    ("global", "user"): USER,
    ("global", "app"): ACCOUNT,
    ("india", "app"): INDIA,
}
# What a region says to a kind of credentials it does not take.
NOT_SERVED: dict[tuple[str, str], str] = {
    ("india", "user"): "reading one user's calls is not supported on TeleCMI's Indian platform (its user "
    "endpoints are only partly documented); use the app id and app secret (auth_type app)",
}


def platform_for(region: str, kind: str) -> Platform:
    """The platform of a region for a kind of credentials ("token", "login" or "app"); KeyError saying why not."""
    key = (region, "app" if kind == "app" else "user")
    if key not in PLATFORM_OF:
        raise KeyError(NOT_SERVED.get(key, f"no TeleCMI platform for {kind} credentials in region {region}"))
    return PLATFORMS[PLATFORM_OF[key]]


@dataclass(frozen=True)
class Path:
    """Where a platform serves a list, the page size to ask for, and credential fields of its own if any."""

    path: str
    page_size: int
    count_field: Optional[str] = None  # the platform's, unless this path differs
    credentials: Optional[Mapping[str, str]] = None  # the platform's, unless this path differs


class StreamKind(Enum):
    """How a list is read; the source wires each kind to its reader (`streams.READERS`)."""

    WINDOWED = "windowed"  # pages of records in time windows, each window exactly once (incremental by `cursor`)
    WHOLE = "whole"  # pages of the whole list, read to its end (full refresh)
    DAILY = "daily"  # one answer per UTC day, for that day's range; its `fields` make the day's record
    SINGLE = "single"  # one answer per sync; its `fields` make the sync's one record
    FILES = "files"  # the files of other lists' records (`FILE_SOURCES`), in windows read together; fetched by `paths`


@dataclass(frozen=True)
class ListRow:
    """One list TeleCMI serves, as a stream.

    `paths` gives, per platform that has the list, the paths to try in order (the next when TeleCMI
    does not have one). `kind` says how it is read (`StreamKind`): windowed and whole lists are pages
    of records under `items`; `count_required`: a page without the count is retried (a list whose
    count is optional is read until a page comes back short).
    """

    stream: str
    paths: Mapping[str, tuple[Path, ...]]
    primary_key: tuple[str, ...]
    items: str = ""
    cursor: Optional[str] = None
    constants: Mapping[str, Any] = field(default_factory=dict)
    count_required: bool = True
    # The field a platform's records carry instead of the primary key (India's `_id`), copied into it.
    key_from: Optional[str] = None
    kind: StreamKind = StreamKind.WHOLE
    fields: tuple[str, ...] = ()  # daily and single: the answer's fields a record is made of

    @property
    def windowed(self) -> bool:
        """Read in time windows, exactly once per window (the call lists, the voicemails)."""
        return self.kind is StreamKind.WINDOWED

    @property
    def schema_name(self) -> str:
        return self.stream

    def on(self, platform: str) -> tuple[Path, ...]:
        """The paths of this list on `platform`; empty if the platform lacks it."""
        return self.paths.get(platform, ())


# The call lists as a matrix, stream x platform: a platform (a region) is a column, with its page size.
CALL_PLATFORMS: tuple[tuple[str, int], ...] = ((USER, 10), (ACCOUNT, 20), (INDIA, 10))
CALL_PATHS: dict[tuple[str, str, str], tuple[str, ...]] = {
    # (stream, direction, status):                           USER                     ACCOUNT             INDIA
    ("incoming_answered_calls", "incoming", "answered"): ("/v2/user/answered", "/v2/answered", "/v1/answered"),
    ("incoming_missed_calls", "incoming", "missed"): ("/v2/user/missed", "/v2/missed", "/v1/missed"),
    ("outgoing_answered_calls", "outgoing", "answered"): (
        "/v2/user/out_answered",
        "/v2/out_answered",
        "/v1/outanswered",
    ),
    ("outgoing_missed_calls", "outgoing", "missed"): ("/v2/user/out_missed", "/v2/out_missed", "/v1/outmissed"),
}

CALL_LISTS: tuple[ListRow, ...] = tuple(
    ListRow(
        stream=stream,
        paths={platform: (Path(path, size),) for (platform, size), path in zip(CALL_PLATFORMS, paths, strict=True)},
        items="cdr",
        primary_key=("cmiuid",),
        cursor="time",
        constants={"direction": direction, "status": status},
        key_from="_id",
        kind=StreamKind.WINDOWED,
    )
    for (stream, direction, status), paths in CALL_PATHS.items()
)

VOICEMAILS = ListRow(
    stream="voicemails",
    paths={ACCOUNT: (Path("/v2/voicemail", 10),), INDIA: (Path("/v1/voicemail", 10),)},
    items="voicemail",
    primary_key=("voicename",),
    cursor="time",
    kind=StreamKind.WINDOWED,
)

USERS_LIST = ListRow(
    stream="users",
    paths={
        ACCOUNT: (Path("/v3/user/list", 20), Path("/v2/user/list", 10)),
        INDIA: (Path("/v1/agent/list", 10, count_field="count", credentials=APP_FIELDS),),
    },
    items="agents",
    primary_key=("agent_id",),
    count_required=False,
)

# The request that proves app credentials cheaply, and TeleCMI's own totals of a range.
ANALYSIS = {ACCOUNT: Path("/v2/analysis", 1), INDIA: Path("/v1/analysis", 1)}

DAILY_TOTALS = ListRow(
    stream="daily_call_totals",
    paths={platform: (path,) for platform, path in ANALYSIS.items()},
    primary_key=("day",),
    cursor="day",
    kind=StreamKind.DAILY,
    fields=("total", "answered", "missed"),
)

BALANCE = ListRow(
    stream="account_balance",
    paths={ACCOUNT: (Path("/v2/balance", 1),), INDIA: (Path("/v1/balance", 1),)},
    primary_key=(),
    kind=StreamKind.SINGLE,
    fields=("balance", "sms", "expire"),
)

# The audio files TeleCMI holds: its `paths` fetch one file (GET, the credentials in the query); its records
# come from the lists of `FILE_SOURCES`, read in the same windows.
RECORDINGS = ListRow(
    stream="recordings",
    paths={ACCOUNT: (Path("/v2/play", 1),), INDIA: (Path("/v1/play", 1),)},
    primary_key=("file",),
    cursor="time",
    kind=StreamKind.FILES,
)


@dataclass(frozen=True)
class FileSource:
    """A list whose records name files: which records have one, the field holding its name, and their kind."""

    stream: str
    kind: str  # "call" or "voicemail"
    name_field: str
    flag_field: Optional[str] = None  # a record has a file only when this is true ("true" or true), if set


FILE_SOURCES: tuple[FileSource, ...] = (
    FileSource("incoming_answered_calls", "call", "filename", "record"),
    FileSource("outgoing_answered_calls", "call", "filename", "record"),
    FileSource("voicemails", "voicemail", "voicename"),
)

LISTS: tuple[ListRow, ...] = (*CALL_LISTS, VOICEMAILS, USERS_LIST, DAILY_TOTALS, BALANCE, RECORDINGS)
LOGIN_PATH = "/v2/user/login"
