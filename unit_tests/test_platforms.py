"""TeleCMI's platforms and lists as rows of data."""

import pytest

from source_telecmi.shaping import schema_of
from source_telecmi.telecmi.platforms import (
    ACCOUNT,
    ANALYSIS,
    APP_FIELDS,
    BALANCE,
    CALL_LISTS,
    DAILY_TOTALS,
    FILE_SOURCES,
    INDIA,
    LISTS,
    LOGIN_PATH,
    PLATFORMS,
    RECORDINGS,
    REGIONS,
    USER,
    USERS_LIST,
    VOICEMAILS,
    ListRow,
    Path,
    StreamKind,
    platform_for,
)

CALLS = {row.stream: row for row in CALL_LISTS}


def test_the_three_platforms():
    user, account, india = PLATFORMS[USER], PLATFORMS[ACCOUNT], PLATFORMS[INDIA]
    assert (user.region, user.base_url, dict(user.credentials)) == (
        "global",
        "https://rest.telecmi.com",
        {"token": "token"},
    )
    assert (user.window_fields, user.count_field, user.success_codes) == (("from", "to"), "count", frozenset({200}))
    assert (account.region, account.base_url) == ("global", "https://rest.telecmi.com")
    assert dict(account.credentials) == {"appid": "app_id", "secret": "app_secret"}
    assert (account.window_fields, account.count_field) == (("start_date", "end_date"), "count")
    assert account.success_codes == frozenset({200})
    assert (india.region, india.base_url) == ("india", "https://piopiy.telecmi.com")
    assert dict(india.credentials) == {"appid": "app_id", "token": "app_secret"}  # India's secret goes as `token`
    assert (india.window_fields, india.count_field) == (("start_date", "end_date"), "total")
    assert india.success_codes == frozenset({200, 2000})
    assert all(name == platform.name for name, platform in PLATFORMS.items())


def test_regions_and_their_hosts():
    assert REGIONS == {"global": "https://rest.telecmi.com", "india": "https://piopiy.telecmi.com"}


@pytest.mark.parametrize(
    "region, kind, platform",
    [
        ("global", "app", ACCOUNT),
        ("global", "token", USER),
        ("global", "login", USER),
        ("india", "app", INDIA),
    ],
)
def test_platform_for_a_region_and_credentials(region, kind, platform):
    assert platform_for(region, kind) is PLATFORMS[platform]


@pytest.mark.parametrize("kind", ["token", "login"])
def test_no_platform_for_user_credentials_in_india(kind):
    with pytest.raises(KeyError):
        platform_for("india", kind)


def test_the_four_call_lists_and_their_paths():
    assert {name: {p: [path.path for path in row.on(p)] for p in PLATFORMS} for name, row in CALLS.items()} == {
        "incoming_answered_calls": {
            "user": ["/v2/user/answered"],
            "account": ["/v2/answered"],
            "india": ["/v1/answered"],
        },
        "incoming_missed_calls": {"user": ["/v2/user/missed"], "account": ["/v2/missed"], "india": ["/v1/missed"]},
        "outgoing_answered_calls": {
            "user": ["/v2/user/out_answered"],
            "account": ["/v2/out_answered"],
            "india": ["/v1/outanswered"],
        },
        "outgoing_missed_calls": {
            "user": ["/v2/user/out_missed"],
            "account": ["/v2/out_missed"],
            "india": ["/v1/outmissed"],
        },
    }
    assert all(set(row.paths) == set(PLATFORMS) for row in CALL_LISTS)


@pytest.mark.parametrize("row", CALL_LISTS, ids=lambda row: row.stream)
def test_a_call_list_row(row):
    assert (row.items, row.primary_key, row.cursor, row.key_from) == ("cdr", ("cmiuid",), "time", "_id")
    assert row.count_required
    direction, status = row.stream.split("_")[:2]
    assert dict(row.constants) == {"direction": direction, "status": status}
    assert [path.page_size for path in row.on(USER)] == [10]
    assert [path.page_size for path in row.on(ACCOUNT)] == [20]
    assert [path.page_size for path in row.on(INDIA)] == [10]
    assert all(path.count_field is None and path.credentials is None for paths in row.paths.values() for path in paths)
    assert row.schema_name == row.stream


def test_the_users_list_is_read_whole_from_the_first_path_there():
    row = USERS_LIST
    assert (row.stream, row.items, row.primary_key, row.cursor) == ("users", "agents", ("agent_id",), None)
    assert not row.count_required  # read until a page comes back short
    assert row.on(USER) == ()  # a user's credentials have no users list: the stream is left out
    assert [(p.path, p.page_size) for p in row.on(ACCOUNT)] == [("/v3/user/list", 20), ("/v2/user/list", 10)]
    (india,) = row.on(INDIA)
    assert (india.path, india.page_size, india.count_field) == ("/v1/agent/list", 10, "count")
    assert dict(india.credentials) == APP_FIELDS == {"appid": "app_id", "secret": "app_secret"}
    assert dict(row.constants) == {} and row.key_from is None


def test_the_lists_every_platform_reads():
    assert (*CALL_LISTS, VOICEMAILS, USERS_LIST, DAILY_TOTALS, BALANCE, RECORDINGS) == LISTS
    assert len({row.stream for row in LISTS}) == len(LISTS)
    assert [row.stream for row in LISTS if row.on(USER)] == [row.stream for row in CALL_LISTS]
    assert [row.stream for row in LISTS if row.on(ACCOUNT)] == [row.stream for row in LISTS]
    assert [row.stream for row in LISTS if row.on(INDIA)] == [row.stream for row in LISTS]


def test_how_each_list_is_read():
    assert [row.stream for row in LISTS if row.windowed] == [*(row.stream for row in CALL_LISTS), "voicemails"]
    assert {row.stream: row.kind for row in LISTS if not row.windowed} == {
        "users": StreamKind.WHOLE,
        "daily_call_totals": StreamKind.DAILY,
        "account_balance": StreamKind.SINGLE,
        "recordings": StreamKind.FILES,
    }
    assert all(row.cursor == "time" for row in LISTS if row.kind is StreamKind.WINDOWED)
    assert not USERS_LIST.windowed and USERS_LIST.kind is StreamKind.WHOLE
    assert not DAILY_TOTALS.windowed, "a cursor, but one answer per day, not windows of pages"


def test_the_voicemails_are_a_windowed_list_of_the_app_credentials():
    row = VOICEMAILS
    assert (row.items, row.primary_key, row.cursor) == ("voicemail", ("voicename",), "time")
    assert [(p.path, p.page_size) for p in row.on(ACCOUNT)] == [("/v2/voicemail", 10)]
    assert [(p.path, p.page_size) for p in row.on(INDIA)] == [("/v1/voicemail", 10)]
    assert row.on(USER) == ()


def test_the_daily_totals_ask_the_analysis_once_a_day():
    row = DAILY_TOTALS
    assert (row.primary_key, row.cursor, row.fields, row.items) == (
        ("day",),
        "day",
        ("total", "answered", "missed"),
        "",
    )
    assert {platform: paths for platform, paths in row.paths.items()} == {
        platform: (path,) for platform, path in ANALYSIS.items()
    }


def test_the_balance_is_one_answer_a_sync():
    row = BALANCE
    assert (row.primary_key, row.cursor, row.fields) == ((), None, ("balance", "sms", "expire"))
    assert [p.path for p in row.on(ACCOUNT)] == ["/v2/balance"] and [p.path for p in row.on(INDIA)] == ["/v1/balance"]


@pytest.mark.parametrize("row", LISTS, ids=lambda row: row.stream)
def test_every_list_has_its_schema_with_its_key_and_cursor(row):
    properties = schema_of(row.schema_name)["properties"]
    assert all(key in properties for key in row.primary_key)
    assert row.cursor is None or row.cursor in properties
    assert all(field in properties for field in row.constants)


def test_the_recordings_are_the_files_of_the_answered_calls_and_voicemails_fetched_by_play():
    """App credentials on both platforms (a user's token has no play); its records come from three lists."""
    assert RECORDINGS.on(USER) == ()
    assert [p.path for p in RECORDINGS.on(ACCOUNT)] == ["/v2/play"]
    assert [p.path for p in RECORDINGS.on(INDIA)] == ["/v1/play"]
    assert (RECORDINGS.primary_key, RECORDINGS.cursor) == (("file",), "time")
    assert [(s.stream, s.kind, s.name_field, s.flag_field) for s in FILE_SOURCES] == [
        ("incoming_answered_calls", "call", "filename", "record"),
        ("outgoing_answered_calls", "call", "filename", "record"),
        ("voicemails", "voicemail", "voicename", None),
    ]


def test_the_analysis_and_login_paths():
    assert {ACCOUNT: Path("/v2/analysis", 1), INDIA: Path("/v1/analysis", 1)} == ANALYSIS
    assert USER not in ANALYSIS
    assert LOGIN_PATH == "/v2/user/login"


def test_a_row_without_a_platform_lacks_it():
    row = ListRow(stream="s", paths={ACCOUNT: (Path("/x", 5),)}, items="items", primary_key=("id",))
    assert row.on(INDIA) == () and row.on(ACCOUNT) == (Path("/x", 5),)
    assert (row.cursor, dict(row.constants), row.count_required, row.key_from) == (None, {}, True, None)
    assert (row.kind, row.fields, row.windowed) == (StreamKind.WHOLE, (), False)


def test_the_call_lists_are_a_matrix_of_stream_and_platform():
    """A platform is a column: every call list has a path on each, with the column's page size."""
    assert [row.stream for row in CALL_LISTS] == [
        "incoming_answered_calls",
        "incoming_missed_calls",
        "outgoing_answered_calls",
        "outgoing_missed_calls",
    ]
    assert {platform: row.on(platform)[0].page_size for row in CALL_LISTS for platform in (USER, ACCOUNT, INDIA)} == {
        USER: 10,
        ACCOUNT: 20,
        INDIA: 10,
    }
    assert [row.on(INDIA)[0].path for row in CALL_LISTS] == [
        "/v1/answered",
        "/v1/missed",
        "/v1/outanswered",
        "/v1/outmissed",
    ]
    assert [dict(row.constants) for row in CALL_LISTS] == [
        {"direction": d, "status": s} for d in ("incoming", "outgoing") for s in ("answered", "missed")
    ]
