"""Tests of the simulator's recordings: the audio it makes up (audio.py) and GET /v2/play, /v1/play, over real HTTP."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import wave
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from mutagen.id3 import ID3
from mutagen.mp3 import MP3, MPEGFrame

from integration_tests.telecmi_simulator import (
    ACCOUNT_ENDPOINTS,
    ANSWERED,
    GLOBAL_VOICEMAIL,
    INDIA_ENDPOINTS,
    INDIA_PLAY_PATH,
    INDIA_VOICEMAIL,
    OUT_ANSWERED,
    PLAY_FAULTS,
    PLAY_PATH,
    UNPUBLISHED_ENVELOPE,
    Simulator,
    audio_chunks,
    audio_sha256,
    audio_size,
    check_audio,
    file_sha256,
    generate_calls,
    generate_voicemails,
    make_call,
    make_voicemail,
)
from integration_tests.telecmi_simulator import audio as audio_mod
from integration_tests.telecmi_simulator.__main__ import main as cli_main

APP_ID = 1111112
SECRET = "s3cret+/=& ü"  # every character a URL treats specially
OTHER_SECRET = "not-the-secret-42"
T0 = 1_700_000_000_000
DAY = 86_400_000
REPO_ROOT = Path(__file__).resolve().parents[3]
ACC_ANSWERED, ACC_MISSED, ACC_OUT_ANSWERED, _ = ACCOUNT_ENDPOINTS
IN_ANSWERED, IN_MISSED, IN_OUT_ANSWERED, _ = INDIA_ENDPOINTS
NAMES = ("1700000000000_a1b2c3d4_1111112.mp3", "1700000000001_e5f6_1111112.wav", "voicemail.MP3", "Call.WAV")


class Answer:
    def __init__(self, status: int, headers: dict[str, str], raw: bytes) -> None:
        self.status, self.headers, self.raw = status, headers, raw

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def play_target(file: str | None, *, india: bool = False, appid: Any = APP_ID, secret: str | None = SECRET) -> str:
    params: dict[str, Any] = {}
    if appid is not None:
        params["appid"] = appid
    if secret is not None:
        params["token" if india else "secret"] = secret
    if file is not None:
        params["file"] = file
    return f"{INDIA_PLAY_PATH if india else PLAY_PATH}?{urlencode(params, quote_via=quote)}"


def play(sim: Simulator, file: str | None, *, timeout: float = 10.0, **kw: Any) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=timeout)
    try:
        conn.request("GET", play_target(file, **kw))
        r = conn.getresponse()
        raw = r.read()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, raw)
    finally:
        conn.close()


def raw_get(sim: Simulator, target: str, timeout: float = 10.0) -> tuple[bytes, bytes, BaseException | None]:
    """(head, body, error) of a GET read off a plain socket until EOF or an error: exactly what came."""
    sock = socket.create_connection(("127.0.0.1", sim.port), timeout=timeout)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data, error = b"", None
    try:
        while chunk := sock.recv(1 << 16):
            data += chunk
    except OSError as e:
        error = e
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body, error


def play_raw_query(sim: Simulator, path: str, query: str) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        conn.request("GET", f"{path}?{query}")
        r = conn.getresponse()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def sim():
    with Simulator(apps={APP_ID: SECRET}, recordings=NAMES) as s:
        yield s


# ======================================================================= the audio itself


@pytest.mark.parametrize("name", ["a.wav", "B_1111112.WAV"])
@pytest.mark.parametrize("wanted", [0, 45, 4096, 100_001, 3_000_000])
def test_wav_files_open_with_wave_and_hold_the_frames_their_header_says(tmp_path, name, wanted):
    size = audio_size(name, wanted)
    assert size == max(46, wanted - (wanted - 44) % 2)  # even: RIFF files have even lengths
    path = tmp_path / name
    path.write_bytes(b"".join(audio_chunks(name, size)))
    assert path.stat().st_size == size
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getcomptype()) == (1, 2, 8000, "NONE")
        assert w.getnframes() == (size - 44) // 2
        data = w.readframes(w.getnframes() + 10)
    assert len(data) == size - 44
    raw = path.read_bytes()
    assert raw[:4] == b"RIFF" and int.from_bytes(raw[4:8], "little") == size - 8 and raw[8:12] == b"WAVE"
    assert int.from_bytes(raw[40:44], "little") == size - 44
    info = check_audio(path)
    assert (info.kind, info.frames, info.size) == ("wav", (size - 44) // 2, size)
    if size > 16_044:  # a tone, not silence
        samples = memoryview(data).cast("h")
        assert max(samples) > 3000 and min(samples) < -3000


@pytest.mark.parametrize("name", ["a.mp3", "1700000000000_a1b2c3d4_1111112.mp3", "no-extension", "Voice.MP3"])
@pytest.mark.parametrize("wanted", [0, 5000, 100_001, 3_000_000])
def test_mp3_files_parse_with_mutagen_and_every_frame_header_is_valid(tmp_path, name, wanted):
    size = audio_size(name, wanted)
    assert size == max(wanted, audio_mod.min_size(name))  # exact: the ID3 tag's padding takes the rest
    path = tmp_path / "f.mp3"
    path.write_bytes(b"".join(audio_chunks(name, size)))
    assert path.stat().st_size == size
    mp3 = MP3(str(path))
    assert mp3.info.length > 0 and not mp3.info.sketchy
    assert (mp3.info.version, mp3.info.layer, mp3.info.bitrate, mp3.info.sample_rate, mp3.info.channels) == (
        1,
        3,
        32000,
        32000,
        1,
    )
    assert ID3(str(path))["TIT2"].text == [name]
    frames = 0
    with open(path, "rb") as f:  # every frame, one after the other to the last byte, through mutagen's parser
        offset = ID3(str(path)).size
        while offset < size:
            f.seek(offset)
            frame = MPEGFrame(f)  # raises HeaderNotFoundError on an invalid header
            assert (frame.bitrate, frame.sample_rate, frame.channels, frame.padding) == (32000, 32000, 1, False)
            offset = f.tell()
            frames += 1
    assert offset == size and frames >= 4
    assert mp3.info.length == pytest.approx(frames * 1152 / 32000)
    info = check_audio(path, "mp3")
    assert (info.kind, info.frames, info.size) == ("mp3", frames, size)
    assert info.seconds == pytest.approx(mp3.info.length)


def test_sizes_chunks_and_hashes_are_deterministic_and_exact():
    assert audio_size("x.mp3") == audio_size("x.mp3") and 4096 <= audio_size("x.mp3") <= 256 * 1024
    sizes = {audio_size(f"{i}.mp3") for i in range(50)}
    assert len(sizes) > 40  # chosen by the name
    assert audio_size("x.mp3", {"x.mp3": 10_000}) == 10_000
    assert audio_size("y.mp3", {"x.mp3": 10_000}) == audio_size("y.mp3")  # not in the mapping: the default
    assert audio_size("x.mp3", lambda n: 7777) == 7777 and audio_size("x.wav", 7777) == 7776
    for name, size in (("x.mp3", 200_000), ("x.wav", 200_000), ("x.mp3", 1000)):
        chunks = list(audio_chunks(name, size))
        assert sum(map(len, chunks)) == size and max(map(len, chunks)) <= audio_mod.CHUNK_SIZE
        assert audio_sha256(name, size) == sha(b"".join(chunks)) == sha(b"".join(audio_chunks(name, size)))
    assert audio_sha256("x.mp3", 50_000) != audio_sha256("y.mp3", 50_000)
    assert audio_sha256("x.wav", 50_000) != audio_sha256("y.wav", 50_000)
    with pytest.raises(ValueError):
        next(audio_chunks("x.wav", 1001))  # odd: no WAV has that size
    with pytest.raises(ValueError):
        next(audio_chunks("x.mp3", 10))  # below the smallest MP3


def test_check_audio_rejects_damaged_files(tmp_path):
    good_mp3 = b"".join(audio_chunks("a.mp3", 20_000))
    good_wav = b"".join(audio_chunks("a.wav", 20_000))
    offset = 10 + (good_mp3[6] << 21 | good_mp3[7] << 14 | good_mp3[8] << 7 | good_mp3[9])  # after the ID3 tag
    assert good_mp3[offset : offset + 4] == audio_mod.MP3_FRAME_HEADER
    damaged = {
        "cut.mp3": good_mp3[:-100],  # the last frame cut short
        "header.mp3": good_mp3[: offset + 144 * 3] + b"\x00" + good_mp3[offset + 144 * 3 + 1 :],  # no sync
        "layer.mp3": good_mp3[: offset + 1] + b"\xfd" + good_mp3[offset + 2 :],  # Layer II
        "envelope.mp3": UNPUBLISHED_ENVELOPE,
        "cut.wav": good_wav[:-1000],
        "riff.wav": good_wav[:4] + (1).to_bytes(4, "little") + good_wav[8:],
        "envelope.wav": UNPUBLISHED_ENVELOPE,
        "extra.wav": good_wav + b"\x00\x00",
    }
    for name, data in damaged.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=name):
            check_audio(tmp_path / name)
    (tmp_path / "ok.mp3").write_bytes(good_mp3)
    (tmp_path / "ok.wav").write_bytes(good_wav)
    assert check_audio(tmp_path / "ok.mp3").kind == "mp3" and check_audio(tmp_path / "ok.wav").kind == "wav"
    assert file_sha256(tmp_path / "ok.mp3") == audio_sha256("a.mp3", 20_000)


# ======================================================================= which files, which answers


def test_which_files_exist_global_and_india():
    calls = {
        ACC_ANSWERED: [
            make_call(T0, ACC_ANSWERED, filename="acc-true.mp3", record="true"),
            make_call(T0 + 1, ACC_ANSWERED, filename="acc-bool.wav", record=True),
            make_call(T0 + 2, ACC_ANSWERED, filename="acc-false.mp3", record="false"),
            make_call(T0 + 3, ACC_ANSWERED, filename="", record="true"),
        ],
        ACC_OUT_ANSWERED: [make_call(T0, ACC_OUT_ANSWERED, filename="acc-out.mp3")],
        ANSWERED: [make_call(T0, ANSWERED, filename="user-in.mp3")],
        OUT_ANSWERED: [make_call(T0, OUT_ANSWERED, filename="user-out.mp3")],
        ACC_MISSED: [make_call(T0, ACC_MISSED)],  # no file
        IN_ANSWERED: [make_call(T0, IN_ANSWERED, filename="in-in.mp3")],
        IN_OUT_ANSWERED: [make_call(T0, IN_OUT_ANSWERED, filename="in-out.wav")],
        IN_MISSED: [make_call(T0, IN_MISSED, filename="in-missed.mp3", record="false")],
    }
    voicemails = {
        GLOBAL_VOICEMAIL: [make_voicemail(T0, voicename="vm.mp3")],
        INDIA_VOICEMAIL: [make_voicemail(T0, india=True, voicename="in-vm.mp3")],
    }
    with Simulator(apps={APP_ID: SECRET}, calls=calls, voicemails=voicemails, recordings=["added.mp3"]) as s:
        global_files = {"acc-true.mp3", "acc-bool.wav", "acc-out.mp3", "user-in.mp3", "user-out.mp3", "vm.mp3"}
        india_files = {"in-in.mp3", "in-out.wav", "in-vm.mp3"}
        assert set(s.recordings()) == global_files | {"added.mp3"}
        assert set(s.recordings("india")) == india_files | {"added.mp3"}
        rec = s.recordings()["vm.mp3"]
        assert (rec.kind, rec.path, rec.content_type) == ("voicemail", GLOBAL_VOICEMAIL, "audio/mpeg")
        assert s.recordings()["acc-bool.wav"][:3] == ("acc-bool.wav", "call", ACC_ANSWERED)
        assert s.recordings("india")["added.mp3"].kind == "added"
        for name in global_files | {"added.mp3"}:
            a = play(s, name)
            assert a.status == 200 and a.headers["content-type"].startswith("audio/"), name
            assert sha(a.raw) == s.recording_sha256(name) and len(a.raw) == s.recording_size(name)
        for name in india_files | {"added.mp3"}:
            a = play(s, name, india=True)
            assert a.status == 200 and sha(a.raw) == s.recording_sha256(name), name
        for name, india in [
            *((n, True) for n in global_files),  # each platform its own files
            *((n, False) for n in india_files),
            ("acc-false.mp3", False),
            ("in-missed.mp3", True),
            ("nope.mp3", False),
        ]:
            a = play(s, name, india=india)
            assert a.status == 200 and a.json["code"] == 404 and a.json["msg"] == "File not found", name
        # calls arriving later have their files at once; so does a call whose record gains one in place
        s.add_calls(ACC_ANSWERED, [make_call(T0 + 9, ACC_ANSWERED, cmiuid="late", filename="late.mp3")])
        assert play(s, "late.mp3").status == 200 and play(s, "late.mp3").headers["content-type"] == "audio/mpeg"
        s.upsert_after(0, ACC_ANSWERED, [make_call(T0 + 9, ACC_ANSWERED, cmiuid="late", filename="renamed.wav")])
        assert play(s, "renamed.wav").headers["content-type"] == "audio/wav"
        s.add_recordings("added-later.wav")
        assert play(s, "added-later.wav").headers["content-type"] == "audio/wav"


def test_generated_calls_and_voicemails_have_their_files():
    calls = {ACC_ANSWERED: generate_calls(20, T0 - DAY, T0, endpoint=ACC_ANSWERED)}
    calls[ACC_MISSED] = generate_calls(20, T0 - DAY, T0, endpoint=ACC_MISSED)
    voicemails = {GLOBAL_VOICEMAIL: generate_voicemails(5, T0 - DAY, T0)}
    with Simulator(apps={APP_ID: SECRET}, calls=calls, voicemails=voicemails) as s:
        names = {c["filename"] for c in calls[ACC_ANSWERED]} | {v["voicename"] for v in voicemails[GLOBAL_VOICEMAIL]}
        assert set(s.recordings()) == names and len(names) == 25


@pytest.mark.parametrize("india", [False, True])
def test_play_errors_are_telecmis_envelopes(sim, india):
    name = NAMES[0]
    error = {} if india else {"error": True}
    missing = {"code": 404, **error, "msg": "Parameter missing"}
    for kw in ({"appid": None}, {"secret": None}, {"file": None}, {"secret": ""}, {"appid": ""}):
        a = play(sim, kw.pop("file", name), india=india, **kw)
        assert (a.status, a.json) == (200, missing), kw
    for kw in ({"secret": OTHER_SECRET}, {"appid": 42}, {"appid": "abc"}):
        a = play(sim, name, india=india, **kw)
        assert (a.status, a.json) == (200, {"code": 407, **error, "msg": "Invalid app id or secret"}), kw
        assert a.headers["content-type"].startswith("application/json")
    a = play(sim, "nope.mp3", india=india)
    assert (a.status, a.json) == (200, {"code": 404, **error, "msg": "File not found"})
    path = INDIA_PLAY_PATH if india else PLAY_PATH
    sim.refuse_endpoint(path, 403, "Forbidden")
    assert play(sim, name, india=india).json == {"code": 403, **error, "msg": "Forbidden"}
    sim.allow_endpoint(path)
    assert play(sim, name, india=india).status == 200
    # the India form is /v1/play?token=...: the global one takes no token, India's no secret
    wrong_key = "secret" if india else "token"
    a = play_raw_query(sim, path, urlencode({"appid": APP_ID, wrong_key: SECRET, "file": name}))
    assert a.json == missing
    assert sim.stats.files_served == [name] and sim.play_requests(name) == 1


def test_error_placement_status_and_other_methods():
    with Simulator(apps={APP_ID: SECRET}, recordings=NAMES, error_placement="status") as s:
        assert play(s, NAMES[0], secret=OTHER_SECRET).status == 407
        assert play(s, "nope.mp3").status == 404
        assert play(s, NAMES[0]).status == 200
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        conn.request("POST", play_target(NAMES[0]), b"{}", {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 404 and b"Cannot POST /v2/play" in r.read()  # play is a GET only
        conn.request("GET", "/v2/play/" + NAMES[0])  # the path form does not exist
        r = conn.getresponse()
        assert r.status == 404 and b"Cannot GET" in r.read()
        conn.close()


# ======================================================================= publication


def test_unpublished_by_requests_then_published():
    name, other = NAMES[0], NAMES[1]
    with Simulator(apps={APP_ID: SECRET}, recordings=NAMES, unpublished={name: 2}) as s:
        assert play(s, name, secret=OTHER_SECRET).json["code"] == 407  # not counted: not authorized
        for _ in range(2):
            a = play(s, name)
            assert (a.status, a.raw, a.headers["content-type"]) == (
                200,
                UNPUBLISHED_ENVELOPE,
                "application/json; charset=utf-8",
            )
            assert a.headers["content-length"] == "42" and len(UNPUBLISHED_ENVELOPE) == 42
            assert a.json == {"code": 502, "msg": "Internal Server Error"}
        assert play(s, other).status == 200 and s.play_requests(other) == 1  # others are published
        a = play(s, name)
        assert a.headers["content-type"] == "audio/mpeg" and sha(a.raw) == s.recording_sha256(name)
        assert s.play_requests(name) == 3 and s.stats.unpublished_served == 2
        assert s.stats.files_served == [other, name]
        s.unpublished[name] = 5  # an attribute: changed on the fly (3 asked already)
        assert [play(s, name).raw == UNPUBLISHED_ENVELOPE for _ in range(3)] == [True, True, False]


def test_unpublished_by_seconds_never_and_by_callable():
    with Simulator(apps={APP_ID: SECRET}, recordings=NAMES, unpublished={NAMES[0]: 0.4, NAMES[1]: True}) as s:
        assert play(s, NAMES[0]).raw == UNPUBLISHED_ENVELOPE  # the first ask starts the clock
        time.sleep(0.2)
        assert play(s, NAMES[0]).raw == UNPUBLISHED_ENVELOPE
        time.sleep(0.3)
        assert sha(play(s, NAMES[0]).raw) == s.recording_sha256(NAMES[0])
        assert all(play(s, NAMES[1]).raw == UNPUBLISHED_ENVELOPE for _ in range(5))  # True: never
        s.unpublished = lambda n: 1 if n.endswith(".WAV") else None
        assert play(s, "Call.WAV").raw == UNPUBLISHED_ENVELOPE
        assert sha(play(s, "Call.WAV").raw) == s.recording_sha256("Call.WAV")
        assert play(s, NAMES[1]).headers["content-type"] == "audio/wav"


# ======================================================================= framing and types


@pytest.mark.parametrize("framing", [True, False, "chunked", "close"])
@pytest.mark.parametrize("name", ["big.mp3", "big.wav"])
def test_sha256_by_streaming_equals_the_bytes_served(framing, name):
    sizes = {"big.mp3": 1_000_003, "big.wav": 999_998}
    with Simulator(apps={APP_ID: SECRET}, recordings=[name], recording_sizes=sizes, play_content_length=framing) as s:
        for india in (False, True):
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
            conn.request("GET", play_target(name, india=india))
            r = conn.getresponse()
            digest, total = hashlib.sha256(), 0
            while piece := r.read(100_000):
                digest.update(piece)
                total += len(piece)
            conn.close()
            assert total == sizes[name] == s.recording_size(name)
            assert digest.hexdigest() == audio_sha256(name, total) == s.recording_sha256(name)
            if framing is True:
                assert r.getheader("Content-Length") == str(total) and r.getheader("Transfer-Encoding") is None
            elif framing == "close":
                assert r.getheader("Content-Length") is None and r.getheader("Transfer-Encoding") is None
                assert r.getheader("Connection") == "close"
            else:
                assert r.getheader("Content-Length") is None and r.getheader("Transfer-Encoding") == "chunked"
        assert s.stats.files_served == [name, name] and s.stats.bytes_sent == 2 * sizes[name]


def test_keep_alive_after_a_whole_file_and_raw_chunked_framing(sim):
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    for name in NAMES:  # one connection, every file
        conn.request("GET", play_target(name))
        r = conn.getresponse()
        assert sha(r.read()) == sim.recording_sha256(name)
    conn.close()
    sim.play_content_length = "chunked"
    head, body, error = raw_get(sim, play_target("Call.WAV"))
    assert error is None and b"Transfer-Encoding: chunked" in head and body.endswith(b"\r\n0\r\n\r\n")


def test_content_type_override_and_omitted(sim):
    assert play(sim, "Call.WAV").headers["content-type"] == "audio/wav"
    assert play(sim, "voicemail.MP3").headers["content-type"] == "audio/mpeg"
    sim.play_content_type = "audio/x-wav"
    assert play(sim, "Call.WAV").headers["content-type"] == "audio/x-wav"
    sim.play_content_type = None
    a = play(sim, "Call.WAV")
    assert "content-type" not in a.headers and sha(a.raw) == sim.recording_sha256("Call.WAV")
    with pytest.raises(ValueError):
        Simulator(play_content_length="sometimes")


# ======================================================================= faults


def test_fault_truncate(sim):
    name, size = NAMES[0], sim.recording_size(NAMES[0])
    sim.inject("truncate", endpoint=PLAY_PATH, after_bytes=1000)
    head, body, error = raw_get(sim, play_target(name))
    assert f"Content-Length: {size}".encode() in head and error is None  # the whole size said, then FIN
    assert body == b"".join(audio_chunks(name, size))[:1000]
    sim.inject("truncate")  # endpoint=None: the play paths only; default: half the file
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    conn.request("GET", play_target(name, india=True))
    r = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead) as cut:
        r.read()
    assert len(cut.value.partial) == size // 2
    sim.play_content_length = "chunked"
    sim.inject("truncate", endpoint=PLAY_PATH, after_bytes=5000)
    head, body, error = raw_get(sim, play_target(name))
    assert b"chunked" in head and not body.endswith(b"0\r\n\r\n") and error is None  # no last chunk
    assert sim.stats.files_served == [] and sim.stats.bytes_sent == 1000 + size // 2 + 5000
    assert sim.stats.faults_served == 3 and sim.pending_faults() == 0


def test_fault_reset_mid_file():
    sizes = {"r.mp3": 2_000_000}
    with Simulator(apps={APP_ID: SECRET}, recordings=sizes, recording_sizes=sizes) as s:
        s.inject("reset_mid_file", endpoint=PLAY_PATH, after_bytes=300_000)
        head, body, error = raw_get(s, play_target("r.mp3"))
        assert isinstance(error, ConnectionResetError), error
        assert b"Content-Length: 2000000" in head and len(body) <= 300_000
        assert body == b"".join(audio_chunks("r.mp3", 2_000_000))[: len(body)]
        assert s.stats.files_served == [] and s.stats.bytes_sent == 300_000
        assert sha(play(s, "r.mp3").raw) == s.recording_sha256("r.mp3")  # once: the next one is whole


def test_fault_slow_body():
    sizes = {"slow.wav": 30_000}
    with Simulator(apps={APP_ID: SECRET}, recordings=sizes, recording_sizes=sizes) as s:
        s.inject("slow_body", endpoint=PLAY_PATH, bytes_per_s=50_000)
        start = time.monotonic()
        a = play(s, "slow.wav")
        elapsed = time.monotonic() - start
        assert sha(a.raw) == s.recording_sha256("slow.wav") and s.stats.files_served == ["slow.wav"]
        assert 0.5 <= elapsed < 3.0, elapsed  # 30,000 bytes at 50,000 B/s: 0.6 s
        start = time.monotonic()
        play(s, "slow.wav")
        assert time.monotonic() - start < 0.3  # once only
        # a client that gives up while the body trickles: the server stops sending, the file is not served
        s.inject("slow_body", endpoint=PLAY_PATH, bytes_per_s=2000)
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        sock.sendall(f"GET {play_target('slow.wav')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got, deadline = b"", time.monotonic() + 0.5
        while time.monotonic() < deadline:
            got += sock.recv(1 << 16)
        sock.close()
        assert 200 < len(got) < 5000
        time.sleep(0.5)  # a write or two fail
        stopped = s.stats.bytes_sent
        time.sleep(0.3)
        assert s.stats.bytes_sent == stopped < 2 * 30_000 + 5000 and s.stats.files_served == ["slow.wav", "slow.wav"]


def test_fault_envelope_as_audio(sim):
    sim.inject("envelope_as_audio", endpoint=INDIA_PLAY_PATH)
    a = play(sim, "Call.WAV", india=True)
    assert (a.status, a.headers["content-type"], a.raw) == (200, "audio/wav", UNPUBLISHED_ENVELOPE)
    assert a.headers["content-length"] == "42"
    sim.inject("envelope_as_audio")
    a = play(sim, NAMES[0])
    assert (a.headers["content-type"], a.raw) == ("audio/mpeg", UNPUBLISHED_ENVELOPE)
    assert sim.stats.files_served == [] and sim.stats.unpublished_served == 0
    assert sha(play(sim, NAMES[0]).raw) == sim.recording_sha256(NAMES[0])


@pytest.mark.parametrize("fault", ["429", "500", "503", "drop", "stall"])
def test_list_faults_work_on_play(sim, fault):
    options = {"stall": {"seconds": 0.3}, "429": {"retry_after": 2}}.get(fault, {})
    sim.inject(fault, endpoint=PLAY_PATH, **options)
    start = time.monotonic()
    if fault == "drop":
        with pytest.raises(http.client.RemoteDisconnected):
            play(sim, NAMES[0])
    else:
        a = play(sim, NAMES[0])
        if fault == "429":
            assert (a.status, a.headers["retry-after"], a.json["code"]) == (429, "2", 429)
        elif fault == "500":
            assert (a.status, a.json["code"]) == (500, 500)
        elif fault == "503":
            assert a.status == 503 and a.headers["content-type"].startswith("text/html")
        else:
            assert time.monotonic() - start >= 0.3 and sha(a.raw) == sim.recording_sha256(NAMES[0])
    assert sim.stats.faults_served == 1 and sim.pending_faults() == 0
    assert sha(play(sim, NAMES[0]).raw) == sim.recording_sha256(NAMES[0])


def test_echo_faults_on_play_echo_the_query(sim):
    sim.inject("echo_secret", endpoint=PLAY_PATH)
    assert play(sim, NAMES[0]).json == {"code": 404, "error": True, "msg": f"Authentication Failed for {SECRET}"}
    sim.inject("echo_cut", endpoint=INDIA_PLAY_PATH, length=500)
    a = play(sim, NAMES[0], india=True)
    assert a.json["msg"] == "Invalid parameters: " + play_target(NAMES[0], india=True).partition("?")[2]
    assert quote(SECRET, safe="") in a.json["msg"]  # as the client encoded it
    assert sha(play(sim, NAMES[0]).raw) == sim.recording_sha256(NAMES[0])


def test_play_faults_skip_other_paths_and_list_faults_skip_play():
    calls = {ACC_ANSWERED: [make_call(T0, ACC_ANSWERED, filename="f.mp3")]}
    with Simulator(apps={APP_ID: SECRET}, calls=calls) as s:
        body = {"appid": APP_ID, "secret": SECRET, "start_date": T0 - DAY, "end_date": T0 + DAY}
        for fault in sorted(PLAY_FAULTS):
            s.inject(fault, after_bytes=10, bytes_per_s=1_000_000)
            req = urllib.request.Request(s.base_url + ACC_ANSWERED, json.dumps(body).encode(), method="POST")
            with urllib.request.urlopen(req, timeout=5) as r:
                assert json.loads(r.read())["count"] == 1  # a list: untouched
            assert s.pending_faults() == 1, fault
            raw_get(s, play_target("f.mp3"))
            assert s.pending_faults() == 0, fault
        s.inject("short_page")  # a *calls* fault: the lists only
        assert play(s, "f.mp3").status == 200 and s.pending_faults() == 1


@pytest.mark.parametrize("fault", sorted(PLAY_FAULTS))
def test_play_faults_wait_after_n(sim, fault):
    sim.inject(fault, after=2, endpoint=PLAY_PATH, after_bytes=10, bytes_per_s=1_000_000)
    for _ in range(2):
        assert sha(play(sim, NAMES[0]).raw) == sim.recording_sha256(NAMES[0])
    assert sim.stats.faults_served == 0 and sim.pending_faults() == 1
    raw_get(sim, play_target(NAMES[0]))
    assert sim.stats.faults_served == 1 and sim.pending_faults() == 0


# ======================================================================= stats, pacing, secrets


def test_stats_count_play_requests(sim):
    play(sim, NAMES[0])
    play(sim, NAMES[3], india=True)
    play(sim, "nope.mp3")
    assert sim.stats.by_path == {PLAY_PATH: 2, INDIA_PLAY_PATH: 1} and sim.stats.requests == 3
    assert sim.stats.files_served == [NAMES[0], NAMES[3]]
    assert sim.stats.bytes_sent == sim.recording_size(NAMES[0]) + sim.recording_size(NAMES[3])
    assert sim.stats.bodies_for(PLAY_PATH) == [
        {"path": PLAY_PATH, "appid": str(APP_ID), "file": NAMES[0]},
        {"path": PLAY_PATH, "appid": str(APP_ID), "file": "nope.mp3"},
    ]
    sim.stats.reset()
    assert (sim.stats.files_served, sim.stats.bytes_sent, sim.stats.unpublished_served) == ([], 0, 0)


def test_play_shares_the_lists_rate_limiter():
    calls = {ACC_ANSWERED: [make_call(T0, ACC_ANSWERED, filename="f.mp3")]}
    with Simulator(apps={APP_ID: SECRET}, calls=calls, rate_limit=1.0) as s:  # burst 1, one a second
        body = json.dumps({"appid": APP_ID, "secret": SECRET, "start_date": T0 - DAY, "end_date": T0 + DAY})
        req = urllib.request.Request(s.base_url + ACC_ANSWERED, body.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.loads(r.read())["count"] == 1  # the token
        a = play(s, "f.mp3")  # none left for play
        assert (a.status, a.headers["retry-after"], a.json["code"]) == (429, "1", 429)
        assert s.stats.rate_limited == 1 and s.play_requests("f.mp3") == 0
        time.sleep(1.1)
        assert play(s, "f.mp3").status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:  # play took the token the list wanted
            urllib.request.urlopen(req, timeout=5)
        assert refused.value.code == 429 and s.stats.rate_limited == 2


def test_the_secret_is_never_kept_printed_or_echoed(capfd):
    secret = "Sup3r-S3cret+/Key=="
    with Simulator(apps={APP_ID: secret}, recordings=["f.mp3"], unpublished={"f.mp3": 1}) as s:
        answers = [
            play(s, "f.mp3", secret=secret),
            play(s, "f.mp3", secret=secret),
            play(s, "nope.mp3", secret=secret),
            play(s, "f.mp3", secret=secret + "x"),
            play(s, None, secret=secret),
            play(s, "f.mp3", secret=secret, india=True),
        ]
        s.inject("truncate", after_bytes=10)
        raw_get(s, play_target("f.mp3", secret=secret))
        assert [a.status for a in answers] == [200] * 6
        assert answers[1].headers["content-type"] == "audio/mpeg"  # the secret, with "+" and "/", was understood
        forms = {secret, quote(secret, safe=""), secret.replace("+", " ")}
        kept = repr(s.stats.bodies) + repr(s.stats)
        for a in answers:
            assert not any(f.encode() in a.raw for f in forms) and not any(f in repr(a.headers) for f in forms)
        assert not any(f in kept for f in forms)
    out, err = capfd.readouterr()
    assert not any(f in out + err for f in forms)


# ======================================================================= memory, concurrency, CLI

_BIG = 500 * 1024 * 1024
_SERVER_SCRIPT = f"""
import sys
from integration_tests.telecmi_simulator import Simulator
sizes = {{"big.wav": {_BIG}, "small.wav": 100_000}}
sim = Simulator(apps={{{APP_ID}: "s"}}, recordings=sizes, recording_sizes=sizes).start()
print(sim.port, flush=True)
sys.stdin.read()
sim.stop()
"""


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the simulator's RSS from /proc")
def test_a_500_mb_file_streams_in_little_memory():
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER_SCRIPT],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proc.stdout.readline())

        def get(name: str) -> tuple[int, str, str | None]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", f"{PLAY_PATH}?appid={APP_ID}&secret=s&file={name}")
            r = conn.getresponse()
            digest, total = hashlib.sha256(), 0
            while piece := r.read(1 << 20):
                digest.update(piece)
                total += len(piece)
            conn.close()
            return total, digest.hexdigest(), r.getheader("Content-Length")

        assert get("small.wav")[0] == 100_000  # warm: threads, imports, the tone's pattern
        before = _status_kb(proc.pid, "VmRSS")
        total, digest, length = get("big.wav")
        peak = _status_kb(proc.pid, "VmHWM")
        assert total == _BIG and length == str(_BIG)
        assert digest == audio_sha256("big.wav", _BIG)
        assert (peak - before) * 1024 < 50 * 1024 * 1024, f"RSS grew {(peak - before) // 1024} MiB"
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_parallel_downloads_are_each_whole():
    names = [f"{i}.{'wav' if i % 2 else 'mp3'}" for i in range(16)]
    with Simulator(apps={APP_ID: SECRET}, recordings=names, latency_ms=20) as s:
        results: dict[str, str] = {}

        def fetch(name: str) -> None:
            results[name] = sha(play(s, name).raw)

        threads = [threading.Thread(target=fetch, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == {n: s.recording_sha256(n) for n in names}
        assert sorted(s.stats.files_served) == sorted(names) and s.stats.max_in_flight > 1


def test_cli_serves_recordings_of_answered_calls_and_voicemails(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "integration_tests.telecmi_simulator",
            "--port-file",
            str(port_file),
            "--calls",
            "4",
            "--days",
            "2",
            "--endpoints",
            "/v2/answered,/v2/missed,/v1/outanswered",
            "--voicemails",
            "3",
            "--recording-kb",
            "30",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        base = f"http://127.0.0.1:{int(port_file.read_text())}"
        end = 1767225600000
        window = {"appid": 1111112, "start_date": end - 2 * DAY, "end_date": end}

        def post(path: str, body: dict) -> dict:
            req = urllib.request.Request(base + path, json.dumps(body).encode(), method="POST")
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())

        def get(path: str, secret_key: str, name: str) -> bytes:
            query = urlencode({"appid": 1111112, secret_key: "demo-app-secret", "file": name})
            with urllib.request.urlopen(f"{base}{path}?{query}", timeout=5) as r:
                assert r.headers["Content-Type"] == "audio/mpeg"
                return r.read()

        files = [
            (PLAY_PATH, "secret", c["filename"])
            for c in post(ACC_ANSWERED, {**window, "secret": "demo-app-secret"})["cdr"]
        ]
        files += [
            (INDIA_PLAY_PATH, "token", c["filename"])
            for c in post(IN_OUT_ANSWERED, {**window, "token": "demo-app-secret"})["cdr"]
        ]
        vm = post(GLOBAL_VOICEMAIL, {**window, "secret": "demo-app-secret", "limit": 10})["voicemail"]
        files += [(PLAY_PATH, "secret", v["voicename"]) for v in vm]
        in_vm = post(INDIA_VOICEMAIL, {**window, "token": "demo-app-secret"})["voicemail"]
        files += [(INDIA_PLAY_PATH, "token", v["voicename"]) for v in in_vm]
        assert len(files) == 4 + 4 + 3 + 3
        for path, key, name in files:
            data = get(path, key, name)
            assert len(data) == 30 * 1024 and sha(data) == audio_sha256(name, 30 * 1024)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "3 voicemails per platform, recordings of 30 KiB" in err


@pytest.mark.parametrize("value", ["0", "abc", "200-20", "-5", "1-"])
def test_cli_rejects_bad_recording_sizes(value, capsys):
    assert cli_main(["--recording-kb", value]) == 2
    assert "invalid --recording-kb" in capsys.readouterr().err


class _Started(Exception):
    pass


def test_cli_default_recording_sizes_are_20_to_200_kib(monkeypatch):
    seen: dict[str, Any] = {}

    class Probe(Simulator):
        def start(self) -> Simulator:
            seen["sizes"] = [self.recording_size(n) for n in self.recordings()]
            seen["voicemails"] = len(self.records(GLOBAL_VOICEMAIL)), len(self.records(INDIA_VOICEMAIL))
            raise _Started

    monkeypatch.setattr("integration_tests.telecmi_simulator.__main__.Simulator", Probe)
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(_Started):
            cli_main(["--calls", "50", "--endpoints", "/v2/answered"])
    finally:
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
    assert len(seen["sizes"]) == 50 + 30 and seen["voicemails"] == (30, 30)
    assert all(20 * 1024 <= n <= 200 * 1024 for n in seen["sizes"])
    assert max(seen["sizes"]) - min(seen["sizes"]) > 50 * 1024  # spread over the range
