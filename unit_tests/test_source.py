"""The source end to end in-process, TeleCMI mocked with the CDK's HttpMocker."""

import json
import logging
from unittest import TestCase

from airbyte_cdk.models import Status, SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import discover, read
from airbyte_cdk.test.mock_http import HttpMocker, HttpRequest, HttpResponse
from airbyte_cdk.test.state_builder import StateBuilder

from source_telecmi import SourceTelecmi

API = "https://rest.telecmi.com"
START_MS = 1704067200000  # 2024-01-01T00:00:00Z
END_MS = START_MS + 3_600_000  # 2024-01-01T01:00:00Z: one window
CONFIG = {
    "credentials": {"auth_type": "token", "token": "unit-token"},
    "start_date": "2024-01-01T00:00:00Z",
    "end_date": "2024-01-01T01:00:00Z",
    "lookback_window_days": 0,
    "num_workers": 2,
}


def page_request(page, request_from=START_MS - 1, request_to=END_MS + 1, path="/v2/user/out_missed"):
    body = {"token": "unit-token", "from": request_from, "to": request_to, "page": page, "limit": 10}
    return HttpRequest(url=API + path, body=json.dumps(body))


def call(i):
    return {"cmiuid": f"call-{i:02d}", "time": END_MS - 1000 * i, "from": "6500", "to": 919100000000 + i, "duration": 0}


def answer(count, records):
    return HttpResponse(body=json.dumps({"count": count, "cdr": records, "code": 200}))


def catalog(sync_mode=SyncMode.incremental):
    return CatalogBuilder().with_stream("outgoing_missed_calls", sync_mode).build()


class SourceTest(TestCase):
    @HttpMocker()
    def test_check_succeeds_with_a_good_token(self, http_mocker):
        http_mocker.post(page_request(1), answer(0, []))
        status = SourceTelecmi().check(logger=_logger(), config=CONFIG)
        assert status.status == Status.SUCCEEDED

    @HttpMocker()
    def test_check_fails_in_one_line_with_a_bad_token(self, http_mocker):
        http_mocker.post(
            page_request(1),
            HttpResponse(
                body=json.dumps({"code": 404, "error": True, "msg": "Invalid user token, Failed to authenticate token"})
            ),
        )
        status = SourceTelecmi().check(logger=_logger(), config=CONFIG)
        assert status.status == Status.FAILED
        assert "invalid or expired" in status.message and "\n" not in status.message

    def test_discover_lists_the_four_streams(self):
        output = discover(SourceTelecmi(), CONFIG)
        streams = {s.name: s for s in output.catalog.catalog.streams}
        assert set(streams) == {
            "outgoing_missed_calls",
            "incoming_missed_calls",
            "incoming_answered_calls",
            "outgoing_answered_calls",
        }
        assert all(s.source_defined_primary_key == [["cmiuid"]] for s in streams.values())

    @HttpMocker()
    def test_read_pages_a_window_and_checkpoints_it(self, http_mocker):
        calls = [call(i) for i in range(12)]
        http_mocker.post(page_request(1), answer(12, calls[:10]))
        http_mocker.post(page_request(2), answer(12, calls[10:]))
        output = read(SourceTelecmi(), CONFIG, catalog())
        records = [m.record.data for m in output.records]
        assert sorted(r["cmiuid"] for r in records) == sorted(c["cmiuid"] for c in calls)
        assert all(isinstance(r["to"], str) for r in records)
        state = output.most_recent_state.stream_state.__dict__
        assert state["state_type"] == "date-range"
        assert state["slices"] == [{"start": START_MS - 1, "end": END_MS, "most_recent_cursor_value": END_MS}]
        estimates = [m.trace.estimate.row_estimate for m in output.trace_messages if m.trace.estimate]
        assert estimates == [12]

    @HttpMocker()
    def test_incremental_read_starts_after_the_newest_call_of_the_state(self, http_mocker):
        newest = START_MS + 1_800_000
        http_mocker.post(page_request(1, request_from=newest, request_to=END_MS + 1), answer(1, [call(1)]))
        state = StateBuilder().with_stream_state("outgoing_missed_calls", {"time": newest}).build()
        output = read(SourceTelecmi(), CONFIG, catalog(), state)
        assert [m.record.data["cmiuid"] for m in output.records] == ["call-01"]

    @HttpMocker()
    def test_a_refused_stream_is_skipped_with_a_warning(self, http_mocker):
        http_mocker.post(
            page_request(1, path="/v2/user/answered"),
            HttpResponse(body=json.dumps({"code": 403, "error": True, "msg": "Not enabled for this user"})),
        )
        http_mocker.post(page_request(1), answer(1, [call(3)]))
        two = (
            CatalogBuilder()
            .with_stream("outgoing_missed_calls", SyncMode.incremental)
            .with_stream("incoming_answered_calls", SyncMode.incremental)
            .build()
        )
        output = read(SourceTelecmi(), CONFIG, two)
        assert not output.errors
        assert [m.record.data["cmiuid"] for m in output.records] == ["call-03"]
        assert output.is_in_logs("incoming_answered_calls skipped.*Not enabled for this user")


def _logger():
    return logging.getLogger("airbyte")
