"""The console script: the CDK's entrypoint, every output line masked but records and states, and a run that returns."""

import io
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from airbyte_cdk.config_observation import create_connector_config_control_message
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteLogMessage,
    AirbyteMessage,
    ConfiguredAirbyteCatalogSerializer,
    Level,
    Status,
    SyncMode,
    Type,
)
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.mock_http import HttpRequest, HttpResponse
from jsonschema import Draft7Validator

import source_telecmi
from source_telecmi import SourceTelecmi
from source_telecmi import run as run_module
from source_telecmi.config import ConfigError, upgraded
from source_telecmi.run import (
    STDOUT_CLOSED_EXIT,
    UNMASKED,
    MaskedStream,
    TelecmiEntrypoint,
    main,
    masked_message,
    run,
    watch_stdout,
    write_all,
)
from source_telecmi.secrets import register_secret

API = "https://rest.telecmi.com"
START_MS = 1704067200000
END_MS = START_MS + 3_600_000
APP_ID = 1111112
SECRET = "app-s3cret-value-for-run"
TOKEN = "unit-token-for-the-run-1"
CONFIG = {
    "credentials": {"auth_type": "token", "token": TOKEN},
    "start_date": "2024-01-01T00:00:00Z",
    "end_date": "2024-01-01T01:00:00Z",
    "lookback_window_days": 0,
    "num_workers": 2,
}
APP_CONFIG = {**CONFIG, "credentials": {"auth_type": "app", "app_id": APP_ID, "app_secret": SECRET}}


def user_page(page, path="/v2/user/out_missed", limit=10):
    body = {"token": TOKEN, "from": START_MS - 1, "to": END_MS + 1, "page": page, "limit": limit}
    return HttpRequest(url=API + path, body=body)


def answer(count, records):
    return HttpResponse(body=json.dumps({"count": count, "cdr": records, "code": 200}))


def call(i, **fields):
    return {"cmiuid": f"call-{i:02d}", "time": END_MS - 1000 * i, "from": "6500", "to": 919100000000 + i, **fields}


class Output:
    def __init__(self, code, text):
        self.code = code
        self.lines = [line for line in text.splitlines() if line.strip()]
        self.messages = [json.loads(line) for line in self.lines]

    def of(self, kind):
        return [m for m in self.messages if m["type"] == kind]

    def errors(self):
        return [m["trace"]["error"] for m in self.of("TRACE") if m["trace"]["type"] == "ERROR"]

    def outside_config_control(self):
        """Every line but the CONTROL message of a config migration, the one line that holds secrets by design."""
        return "\n".join(
            line
            for line, message in zip(self.lines, self.messages, strict=True)
            if not (message["type"] == "CONTROL" and message["control"]["type"] == "CONNECTOR_CONFIG")
        )


@pytest.fixture
def command(tmp_path, capsys):
    """`source-telecmi` as the platform runs it: its exit code, and its stdout as JSON messages."""

    def run_command(*args, config=None, streams=("outgoing_missed_calls",), sync_mode=SyncMode.incremental):
        argv = list(args)
        if config is not None:
            (tmp_path / "config.json").write_text(json.dumps(config))
            argv += ["--config", str(tmp_path / "config.json")]
        if args[0] == "read":
            builder = CatalogBuilder()
            for name in streams:
                builder = builder.with_stream(name, sync_mode)
            catalog = ConfiguredAirbyteCatalogSerializer.dump(builder.build())
            (tmp_path / "catalog.json").write_text(json.dumps(catalog))
            argv += ["--catalog", str(tmp_path / "catalog.json")]
        code = run(argv)
        return Output(code, capsys.readouterr().out)

    return run_command


# -------------------------------------------------------------------------------------------- run


def test_spec_returns_0_and_prints_one_message_a_line(command):
    output = command("spec")
    assert output.code == 0
    (spec,) = output.of("SPEC")
    assert "credentials" in spec["spec"]["connectionSpecification"]["properties"]


def test_run_restores_the_standard_streams(command):
    before = sys.stdout, sys.stderr, sys.__stdout__
    command("spec")
    assert (sys.stdout, sys.stderr, sys.__stdout__) == before


def test_check_with_a_bad_config_names_the_field_and_returns_0(command):
    output = command("check", config={**CONFIG, "num_workers": 0})
    assert output.code == 0
    (status,) = output.of("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "FAILED"
    assert status["connectionStatus"]["message"] == "num_workers must be from 1 to 32, got 0"


def test_an_app_id_saved_as_a_number_is_read_as_its_digits(command, http_mocker):
    body = {"appid": APP_ID, "secret": SECRET, "start_date": START_MS, "end_date": END_MS}
    http_mocker.post(HttpRequest(url=API + "/v2/analysis", body=body), HttpResponse(body=json.dumps({"code": 200})))
    output = command("check", config=APP_CONFIG)
    assert output.code == 0
    assert output.of("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"


def test_a_read_prints_records_as_they_are_and_returns_0(command, http_mocker):
    register_secret("6500")  # a secret that a record holds: records are printed as they are, never masked
    http_mocker.post(user_page(1), answer(2, [call(1), call(2)]))
    output = command("read", config=CONFIG)
    assert output.code == 0
    records = [m["record"]["data"] for m in output.of("RECORD")]
    assert [r["from"] for r in records] == ["6500", "6500"]
    assert output.of("STATE")
    assert TOKEN not in "\n".join(output.lines)


def test_a_failing_stream_ends_the_run_with_1_and_one_error_trace(command, http_mocker):
    http_mocker.post(
        user_page(1, path="/v2/user/answered"),
        HttpResponse(body=json.dumps({"code": 400, "error": True, "msg": "Parameter missing"})),
    )
    output = command("read", config=CONFIG, streams=("incoming_answered_calls", "outgoing_missed_calls"))
    assert output.code == 1
    (error,) = output.errors()  # the stream's, not again as the sync's
    assert "Parameter missing" in error["message"]
    statuses = [
        (m["trace"]["stream_status"]["stream_descriptor"]["name"], m["trace"]["stream_status"]["status"])
        for m in output.of("TRACE")
        if m["trace"]["type"] == "STREAM_STATUS"
    ]
    assert statuses[-1] == ("incoming_answered_calls", "INCOMPLETE")
    assert not any(name == "outgoing_missed_calls" for name, _ in statuses)


def test_an_unexpected_failure_is_logged_with_its_traceback_then_traced(command, monkeypatch):
    def broken(self, logger, config):
        raise RuntimeError(f"something broke near {SECRET}")

    monkeypatch.setattr(SourceTelecmi, "discover", broken)
    output = command("discover", config=APP_CONFIG)
    assert output.code == 1
    (error,) = output.errors()
    assert "something broke" in error["internal_message"] or "something broke" in error["message"]
    assert any("Traceback" in m["log"]["message"] for m in output.of("LOG") if m["log"]["level"] == "ERROR")
    assert len(output.of("CONTROL")) == 1  # APP_CONFIG's integer app id is migrated: its CONTROL holds the secret
    assert SECRET not in output.outside_config_control()


def test_a_secret_echoed_by_telecmi_is_masked_in_every_line(command, http_mocker):
    http_mocker.post(
        user_page(1, path="/v2/user/answered", limit=1),
        HttpResponse(body=json.dumps({"code": 404, "error": True, "msg": f"Invalid user token {TOKEN[:12]}"})),
    )
    output = command("check", config=CONFIG)
    text = "\n".join(output.lines)
    assert TOKEN[:8] not in text
    status = output.of("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and "invalid or expired" in status["message"]


def test_main_exits_the_process_with_the_code_of_the_run(monkeypatch):
    calls = []
    monkeypatch.setattr(run_module, "watch_stdout", lambda: calls.append("watch"))
    monkeypatch.setattr(run_module, "run", lambda: calls.append("run") or 7)

    def exit_(code):
        calls.append(("exit", code))
        raise SystemExit(code)

    monkeypatch.setattr(run_module.os, "_exit", exit_)
    with pytest.raises(SystemExit):
        main()
    assert calls == ["watch", "run", ("exit", 7)]


# ------------------------------------------------------------------------------------- validation


def test_a_config_error_names_the_field_before_the_spec_check():
    spec = SourceTelecmi().spec(None)
    with pytest.raises(ConfigError, match="^lookback_window_days must be from 0 to 3650, got 9999$"):
        TelecmiEntrypoint.validate_connection(spec, {**CONFIG, "lookback_window_days": 9999})
    TelecmiEntrypoint.validate_connection(spec, CONFIG)


def test_the_spec_check_names_the_path_of_what_it_refuses():
    spec = SourceTelecmi().spec(None)
    # The connector reads an integer app id; the spec asks for its digits (configure upgrades it first).
    with pytest.raises(ConfigError, match=r"^credentials(\.app_id)?: "):
        TelecmiEntrypoint.validate_connection(spec, APP_CONFIG)
    upgraded = SourceTelecmi().configure(APP_CONFIG, "/tmp")
    assert upgraded["credentials"]["app_id"] == str(APP_ID)
    TelecmiEntrypoint.validate_connection(spec, upgraded)


# ------------------------------------------------------------------------------- config migration


def spec_errors(config):
    """What spec.json's connectionSpecification refuses in `config`, read with Draft 7 as the platform and PyAirbyte do."""
    spec = json.loads((Path(source_telecmi.__file__).parent / "spec.json").read_text())["connectionSpecification"]
    return [error.message for error in Draft7Validator(spec).iter_errors(config)]


@pytest.fixture
def quiet_source(monkeypatch):
    """check and read without a request (what they do is not the point here); discover makes none."""
    monkeypatch.setattr(
        SourceTelecmi, "check", lambda self, logger, config: AirbyteConnectionStatus(status=Status.SUCCEEDED)
    )
    monkeypatch.setattr(SourceTelecmi, "read", lambda self, logger, config, catalog, state=None: iter(()))


@pytest.mark.parametrize("verb", ["check", "discover", "read"])
def test_a_config_saved_by_0_2_is_migrated_once_and_stored_with_its_secrets(command, tmp_path, quiet_source, verb):
    assert spec_errors(APP_CONFIG), "0.2's integer app id is what the spec refuses"
    output = command(verb, config=APP_CONFIG)
    assert output.code == 0
    (control,) = output.of("CONTROL")
    assert control["control"]["type"] == "CONNECTOR_CONFIG"
    stored = control["control"]["connectorConfig"]["config"]
    assert (
        stored
        == upgraded(APP_CONFIG)
        == {**APP_CONFIG, "credentials": {**APP_CONFIG["credentials"], "app_id": "1111112"}}
    )
    assert stored["credentials"]["app_secret"] == SECRET, "the platform stores the real secret, not a mask"
    assert not spec_errors(stored)
    assert json.loads((tmp_path / "config.json").read_text()) == stored, "the config file is rewritten"
    (said,) = [m["log"] for m in output.of("LOG") if "saved config was updated" in m["log"]["message"]]
    assert said["level"] == "INFO" and "credentials.app_id is now a string" in said["message"]
    assert SECRET not in said["message"] and str(APP_ID) not in said["message"]
    assert SECRET not in output.outside_config_control(), "the secret is in the CONTROL message only"

    again = command(verb, config=json.loads((tmp_path / "config.json").read_text()))
    assert again.code == 0 and not again.of("CONTROL"), "nothing is left to migrate"
    assert not any("saved config was updated" in m["log"]["message"] for m in again.of("LOG"))
    assert SECRET not in "\n".join(again.lines)


def test_a_config_that_needs_no_upgrade_is_left_as_it_is(command, tmp_path, quiet_source):
    config = {**APP_CONFIG, "credentials": {**APP_CONFIG["credentials"], "app_id": str(APP_ID)}}
    output = command("check", config=config)
    assert output.code == 0 and not output.of("CONTROL")
    assert (tmp_path / "config.json").read_text() == json.dumps(config), "the file is not written again"
    assert not any("saved config was updated" in m["log"]["message"] for m in output.of("LOG"))
    assert SECRET not in "\n".join(output.lines)
    assert command("spec").of("CONTROL") == []


def test_a_config_refused_for_another_reason_is_not_migrated(command, tmp_path):
    config = {**APP_CONFIG, "num_workers": 0}
    output = command("check", config=config)
    assert not output.of("CONTROL"), "the platform never stores a config the spec refuses"
    assert json.loads((tmp_path / "config.json").read_text()) == config
    assert output.of("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "FAILED"
    assert SECRET not in "\n".join(output.lines)


# ------------------------------------------------------------------------------------ masked output


class Sink(io.StringIO):
    def fileno(self):
        return 99


def stream(protocol=True):
    sink = Sink()
    return MaskedStream(sink, protocol), sink


def test_records_and_states_are_printed_as_they_are():
    register_secret("s3cret-in-a-record")
    out, sink = stream()
    record = '{"type":"RECORD","record":{"stream":"users","data":{"name":"s3cret-in-a-record"},"emitted_at":1}}\n'
    state = '{"type":"STATE","state":{"type":"STREAM","note":"s3cret-in-a-record"}}\n'
    out.write(record + state)
    assert sink.getvalue() == record + state
    assert all(line.startswith(UNMASKED) for line in (record, state))


def test_every_other_line_has_its_strings_masked_and_its_numbers_kept():
    register_secret("1111112")
    register_secret("s3cret-for-a-log")
    out, sink = stream()
    out.write('{"type": "LOG", "log": {"level": "INFO", "message": "app 1111112 s3cret-for-a-log ö", "n": 1111112}}\n')
    message = json.loads(sink.getvalue())
    assert message == {"type": "LOG", "log": {"level": "INFO", "message": "app **** **** ö", "n": 1111112}}
    assert "ö" in sink.getvalue()  # not escaped


def test_a_line_that_is_no_protocol_message_becomes_a_log_message():
    register_secret("s3cret-in-a-warning")
    out, sink = stream()
    out.write("DeprecationWarning: s3cret-in-a-warning is old\n[1, 2]\n")
    first, second = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert first == {"type": "LOG", "log": {"level": "WARN", "message": "DeprecationWarning: **** is old"}}
    assert second["log"]["message"] == "[1, 2]"


def test_the_cdks_debug_lines_become_log_messages_at_debug():
    register_secret("s3cret-in-debug")
    out, sink = stream()
    out.write(
        json.dumps({"type": "DEBUG", "message": "Receiving response", "data": {"body": "s3cret-in-debug"}}) + "\n"
    )
    message = json.loads(sink.getvalue())
    assert message["type"] == "LOG" and message["log"]["level"] == "DEBUG"
    assert message["log"]["message"].startswith("Receiving response") and "s3cret-in-debug" not in sink.getvalue()


def test_masked_message_of_a_protocol_line():
    register_secret("s3cret-masked-message")
    line = json.dumps({"type": "TRACE", "trace": {"error": {"message": ["s3cret-masked-message", 3]}}}) + "\n"
    assert json.loads(masked_message(line)) == {"type": "TRACE", "trace": {"error": {"message": ["****", 3]}}}


def test_lines_are_passed_on_only_whole():
    register_secret("s3cret-split-across-writes")
    out, sink = stream(protocol=False)
    out.write("a line with s3cret-spl")
    assert sink.getvalue() == ""
    out.write("it-across-writes and more\nthe next")
    assert sink.getvalue() == "a line with **** and more\n"
    out.close_line()
    assert sink.getvalue() == "a line with **** and more\nthe next\n"
    out.close_line()
    assert sink.getvalue().endswith("the next\n")


def test_stderr_lines_are_masked_text_not_log_messages():
    register_secret("s3cret-on-stderr")
    out, sink = stream(protocol=False)
    out.write("Traceback: s3cret-on-stderr\n\n")
    assert sink.getvalue() == "Traceback: ****\n\n"


def test_the_config_control_message_alone_is_printed_with_its_secrets():
    register_secret("s3cret-of-the-config")
    out, sink = stream()
    config = {"credentials": {"auth_type": "app", "app_id": "1111112", "app_secret": "s3cret-of-the-config"}}
    out.write("a half-written line ")  # a line still being written is neither cut nor passed on early
    out.print_config_control(create_connector_config_control_message(config))
    (line,) = sink.getvalue().splitlines()
    assert json.loads(line)["control"]["connectorConfig"]["config"] == config
    out.write("s3cret-of-the-config\n")
    assert sink.getvalue().splitlines()[1:] == [
        json.dumps(
            {"type": "LOG", "log": {"level": "WARN", "message": "a half-written line ****"}}, separators=(",", ":")
        )
    ]


def test_a_config_control_message_printed_any_other_way_is_masked():
    register_secret("s3cret-of-the-config")
    out, sink = stream()
    message = create_connector_config_control_message({"credentials": {"app_secret": "s3cret-of-the-config"}})
    out.write(TelecmiEntrypoint.airbyte_message_to_string(message) + "\n")
    assert "s3cret-of-the-config" not in sink.getvalue()
    assert json.loads(sink.getvalue())["control"]["connectorConfig"]["config"] == {
        "credentials": {"app_secret": "****"}
    }


def test_only_a_config_control_message_can_be_printed_unmasked():
    register_secret("s3cret-of-a-log")
    out, sink = stream()
    log = AirbyteMessage(type=Type.LOG, log=AirbyteLogMessage(level=Level.INFO, message="s3cret-of-a-log"))
    with pytest.raises(ValueError, match="CONNECTOR_CONFIG"):
        out.print_config_control(log)
    assert sink.getvalue() == ""


def test_a_masked_stream_is_no_terminal_and_has_its_targets_descriptor():
    out, _ = stream()
    assert not out.isatty() and out.fileno() == 99
    assert out.write("abc") == 3


def test_a_closed_stdout_ends_the_process(monkeypatch):
    class Closed(Sink):
        def write(self, text):
            raise BrokenPipeError

    exits = []

    def exit_(code):
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(run_module.os, "_exit", exit_)
    out = MaskedStream(Closed(), protocol=True)
    with pytest.raises(SystemExit):
        out.write('{"type":"RECORD","record":{}}\n')
    assert exits == [STDOUT_CLOSED_EXIT] == [141]


def test_watching_stdout_ends_the_process_when_its_reader_is_gone(monkeypatch):
    read_end, write_end = os.pipe()
    writer = os.fdopen(write_end, "w")
    exited, never = threading.Event(), threading.Event()
    codes = []

    def exit_(code):
        codes.append(code)
        exited.set()
        never.wait()  # the process would be gone: the watching (daemon) thread goes no further

    monkeypatch.setattr(run_module.os, "_exit", exit_)
    monkeypatch.setattr(run_module, "WATCH_INTERVAL_S", 0.01)
    monkeypatch.setattr(sys, "__stdout__", writer)
    try:
        watch_stdout()
        assert not exited.wait(0.1), "nothing happens while someone reads"
        os.close(read_end)
        assert exited.wait(5), "the process ends once nobody reads"
        assert codes == [STDOUT_CLOSED_EXIT]
    finally:
        writer.close()


def test_watching_a_stdout_without_a_descriptor_does_nothing(monkeypatch):
    monkeypatch.setattr(sys, "__stdout__", io.StringIO())
    before = threading.active_count()
    watch_stdout()
    assert threading.active_count() == before


def test_a_line_holding_unicode_line_separators_stays_one_line():
    out, sink = stream()
    record = '{"type":"RECORD","record":{"stream":"s","data":{"n":"a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei"},"emitted_at":1}}\n'
    log = '{"type":"LOG","log":{"level":"INFO","message":"x\u2028y"}}\n'
    out.write(record + log)
    assert sink.getvalue().split("\n") == [record[:-1], log[:-1], ""]


def test_a_slow_non_blocking_pipe_gets_every_byte():
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    target = io.TextIOWrapper(io.FileIO(write_end, "w", closefd=True), encoding="utf-8")
    received = bytearray()

    def read_slowly():
        while chunk := os.read(read_end, 1000):
            received.extend(chunk)
            time.sleep(0.001)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    text = "".join(f'{{"type":"LOG","log":{{"level":"INFO","message":"{n:06d}{"x" * 500}"}}}}\n' for n in range(400))
    write_all(target, text)  # 200 KB into a 64 KB pipe: the pipe refuses most writes at first
    target.close()
    reader.join(timeout=30)
    os.close(read_end)
    assert received.decode() == text
