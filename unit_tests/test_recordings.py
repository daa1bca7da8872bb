"""The recordings' pieces without a server: which records name a file, where a file lands, the pending files
kept in the state, and a play URL's query never shown."""

import logging
from collections import Counter

import pytest

from source_telecmi.engine.deliveries import PendingFiles, relative_path
from source_telecmi.recordings import has_file, recording_of
from source_telecmi.records import Conformer
from source_telecmi.shaping import schema_of
from source_telecmi.telecmi.files import NoPlayQuery, _audio, without_query
from source_telecmi.telecmi.platforms import FILE_SOURCES
from source_telecmi.timeline.instants import DAY_MS, now_ms

INCOMING, OUTGOING, VOICEMAILS = FILE_SOURCES
AT = 1_764_583_200_123  # 2025-12-01T10:00:00.123Z
LOGGER = logging.getLogger("test_recordings")


@pytest.mark.parametrize("flag", ["true", True, " True "])
def test_a_recorded_answered_call_names_its_file(flag):
    assert has_file(INCOMING, {"record": flag, "filename": "a_1111112.mp3"}) == "a_1111112.mp3"


@pytest.mark.parametrize("flag", ["false", False, None, "", "1", 1])
def test_a_call_not_recorded_has_no_file(flag):
    assert has_file(OUTGOING, {"record": flag, "filename": "a.mp3"}) is None


def test_a_recorded_call_without_a_name_is_counted_not_dropped_silently():
    unnamed: Counter[str] = Counter()
    for record in ({"record": "true"}, {"record": "true", "filename": ""}, {"record": "true", "filename": None}):
        assert has_file(INCOMING, record, unnamed) is None
    assert has_file(INCOMING, {"record": "false"}, unnamed) is None  # not recorded: nothing to count
    assert unnamed == {"incoming_answered_calls": 3}


def test_every_voicemail_is_a_file():
    assert has_file(VOICEMAILS, {"voicename": "v1.wav"}) == "v1.wav"
    assert has_file(VOICEMAILS, {"voicename": 1764}) == "1764"  # a number as its digits


def test_a_recordings_record_has_its_schema_s_fields_and_types():
    shape = recording_of(INCOMING, ("cmiuid", "_id"), Conformer("recordings", schema_of("recordings")))
    record = shape({"_id": "692e", "record": "true", "filename": "f.mp3", "agent": 101, "time": str(AT)}, AT)
    assert record == {
        "file": "f.mp3",
        "kind": "call",
        "cmiuid": "692e",  # India's key where there is no cmiuid
        "call_stream": "incoming_answered_calls",
        "time": AT,
        "started_at": "2025-12-01T10:00:00.123Z",
        "agent": "101",  # one type per field: a string
    }
    assert shape({"record": "false", "filename": "g.mp3"}, AT) is None


def test_a_file_lands_under_its_call_s_utc_day_and_never_outside_its_folder():
    assert relative_path("a.mp3", AT) == "recordings/2025/12/01/a.mp3"
    assert relative_path("a.mp3", None) == "recordings/unknown/a.mp3"
    for name in ("../../etc/passwd", "a/b.mp3", "..", ".hidden", "x\\y.wav", "a\x00b"):
        path = relative_path(name, AT)
        assert path.startswith("recordings/2025/12/01/") and path.count("/") == 4, path
        assert ".." not in path.split("/") and not path.rsplit("/", 1)[1].startswith("."), path


def test_pending_files_are_kept_until_delivered_and_let_go_of_when_too_old(caplog):
    now = now_ms()
    saved = {
        "new.mp3": {"time": now - DAY_MS, "kind": "call", "cmiuid": "c1", "call_stream": "x", "agent": None},
        "old.mp3": {"time": now - 8 * DAY_MS, "kind": "call", "cmiuid": "c2", "call_stream": "x", "agent": None},
    }
    pending = PendingFiles(PendingFiles.readable(saved), 7, LOGGER)
    assert pending.saved == {"new.mp3", "old.mp3"}
    with caplog.at_level(logging.WARNING):
        due = pending.due()
    assert [name for name, _ in due] == ["new.mp3"]
    assert "old.mp3" in caplog.text and "recording_pending_days" in caplog.text
    assert set(pending.snapshot()) == {"new.mp3"} and pending.expired == 1
    pending.keep({"file": "late.mp3", "time": now - 2 * DAY_MS, "kind": "voicemail"})
    pending.keep({"file": "ancient.mp3", "time": now - 30 * DAY_MS, "kind": "voicemail"})  # too old already
    pending.delivered("new.mp3")
    assert set(pending.snapshot()) == {"late.mp3"} and pending.expired == 2


def test_with_zero_days_nothing_waits():
    pending = PendingFiles({}, 0, LOGGER)
    pending.keep({"file": "a.mp3", "time": now_ms() - 1000})
    assert pending.snapshot() == {}


@pytest.mark.parametrize("saved", [[], {"a.mp3": {"time": "yesterday"}}, {"a.mp3": 5}])
def test_an_unreadable_pending_list_is_refused(saved):
    with pytest.raises(ValueError, match="pending_files"):
        PendingFiles.readable(saved)


def test_a_play_url_s_query_is_never_shown():
    secret = "s3cr3t+/=%"
    for text in (
        f'"GET /v2/play?appid=1111112&secret={secret}&file=a.mp3 HTTP/1.1" 200',
        "Max retries exceeded with url: /v1/play?appid=1&token=s%2Bx&file=a (Caused by ...)",
        f"https://rest.telecmi.com/v2/play?secret={secret}",
    ):
        shown = without_query(text)
        assert "secret" not in shown and "token" not in shown and "appid" not in shown, shown
    record = logging.LogRecord(
        "urllib3.connectionpool", logging.DEBUG, "", 0, '%s "%s %s"', ("h", "GET", "/v2/play?secret=x"), None
    )
    assert NoPlayQuery().filter(record) and "secret" not in record.getMessage()


@pytest.mark.parametrize(
    ("content_type", "first", "audio"),
    [
        ("audio/mpeg", b"ID3\x03", True),
        ("audio/wav", b"RIFF", True),
        (None, b"\xff\xfb", True),
        ("application/octet-stream", b"\xff\xfb", True),
        ("text/html", b"<!DOCTYPE html>", False),
        ("audio/mpeg", b"<html>", False),
        (None, b'{"code":502}', False),
        ("audio/mpeg", b"", False),
    ],
)
def test_an_answer_is_audio_by_its_type_and_its_first_bytes(content_type, first, audio):
    assert _audio(content_type, first) is audio
