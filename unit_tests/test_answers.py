"""TeleCMI's answers: the envelope of every answer, and the one row of the tables each kind of answer comes to."""

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.streams.http.error_handlers import ErrorResolution, ResponseAction
from airbyte_cdk.test.mock_http import HttpRequest, HttpResponse
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.secrets import register_secret
from source_telecmi.telecmi.answers import (
    ADDRESS_IN_DOUBT,
    BODY_CODES,
    CUT_OFF,
    ENDPOINT_MISSING,
    LACKS_FIELDS,
    MALFORMED,
    NETWORK_FAULTS,
    NOT_JSON,
    PROXY_REFUSED,
    RATE_LIMITED,
    REDIRECT,
    REFUSED,
    REQUEST_FAILED,
    RETRIED_STATUSES,
    RETRY_SERVER,
    RETRY_STATUS,
    SERVED,
    STATUS_WITHOUT_CODE,
    STATUSES,
    TIMED_OUT,
    UNKNOWN_CODE,
    UNKNOWN_STATUS,
    UNREACHABLE,
    UNUSABLE_URL,
    WRONG_CREDENTIALS,
    AccessRefused,
    EndpointMissing,
    address_in_doubt,
    network_cause,
    rate_limited,
    resolve,
    retry_after_s,
    say,
)
from source_telecmi.telecmi.body import as_count, body_of, code_of, from_telecmi, is_json, message_of, parse_json
from source_telecmi.telecmi.client import TelecmiApi, listing
from source_telecmi.telecmi.credentials import Credentials
from source_telecmi.telecmi.platforms import ACCOUNT, CALL_LISTS, PLATFORMS, USER

API = "https://rest.telecmi.com"
OUT_MISSED = "/v2/user/out_missed"
CALL = {"cmiuid": "a", "time": 1764583200123}
INDIA_CODES = {**BODY_CODES, 2000: BODY_CODES[200]}
# What each row means to the CDK: its action and failure type.
OK = (ResponseAction.SUCCESS, None)
RETRY = (ResponseAction.RETRY, FailureType.transient_error)
FAIL = (ResponseAction.FAIL, FailureType.system_error)
CONFIG = (ResponseAction.FAIL, FailureType.config_error)
IGNORE = (ResponseAction.IGNORE, FailureType.config_error)
LIMITED = (ResponseAction.RATE_LIMITED, FailureType.transient_error)


def meaning(row):
    return row.response_action, row.failure_type


def response(status=200, body=None, content=None, headers=None, path=OUT_MISSED):
    answer = requests.Response()
    answer.status_code = status
    answer._content = content if content is not None else json.dumps(body).encode()
    answer.headers.update(headers or {})
    answer.request = requests.Request("POST", API + path).prepare()
    return answer


# What a page of calls needs: the connector's own `listing`, as the API builds it for a call list.
cdr_lacking = listing("cdr", "count")


# ------------------------------------------------------------------------------------ codes and bodies


@pytest.mark.parametrize(
    "body, code",
    [
        ({"code": 200}, 200),
        ({"code": 404}, 404),
        ({"code": "200"}, 200),
        ({"code": "404"}, 404),
        ({"code": " 407 "}, 407),
        ({"code": "cmi-2000"}, 2000),  # India's success code is 2000, a success of its own (INDIA lists it)
        ({"code": "CMI-2000"}, 2000),
        ({"code": "cmi-404"}, 404),
        ({"code": "cmi-oops"}, "cmi-oops"),
        ({"count": 3, "cdr": []}, None),
        ({"code": None}, None),
        ([1, 2], None),
        ("text", None),
    ],
)
def test_code_of_reads_every_form_of_a_code(body, code):
    assert code_of(body) == code


def test_body_of_reads_json_once():
    answer = response(body={"code": 200, "count": 1, "cdr": [CALL]})
    assert body_of(answer) == {"code": 200, "count": 1, "cdr": [CALL]}
    assert body_of(answer) is body_of(answer)


def test_body_of_reads_a_lone_surrogate_and_replaces_it():
    # Valid JSON for Python's parser, refused by orjson: a note cut inside an emoji.
    answer = response(content=b'{"code": 200, "count": 1, "cdr": [{"name": "Ann \\ud83d", "time": 1}]}')
    body = body_of(answer)
    assert body["cdr"][0]["name"] == "Ann \ufffd"
    row, resolution = resolve(answer, cdr_lacking)
    assert row is SERVED and resolution is SERVED


def test_body_of_replaces_bytes_that_are_not_utf8():
    answer = response(content=b'{"code": 200, "count": 1, "cdr": [{"name": "Ann \xf0\x9f", "time": 1}]}')
    assert body_of(answer)["cdr"][0]["name"] == "Ann \ufffd"
    assert resolve(answer, cdr_lacking)[0] is SERVED


@pytest.mark.parametrize(
    "text, value",
    [
        (b'{"to": 91910000000000000001}', 91910000000000000001),  # 20 digits
        (b'{"to": -123456789012345678901234}', -123456789012345678901234),
        (b'{"a": [{"b": 12345678901234567890123456789}]}', 12345678901234567890123456789),
    ],
)
def test_integers_of_20_digits_or_more_keep_every_digit(text, value):
    parsed = parse_json(text)
    found = parsed.get("to", None) if "to" in parsed else parsed["a"][0]["b"]
    assert found == value and isinstance(found, int)


def test_a_body_with_a_long_integer_and_a_lone_surrogate_is_read_whole():
    body = parse_json(b'{"to": 919100000000000000001, "name": "Ann \\ud83d"}')
    assert body == {"to": 919100000000000000001, "name": "Ann \ufffd"}


def test_shorter_numbers_are_read_as_orjson_reads_them():
    assert parse_json(b'{"to": 9191000000000000000, "rate": 0.49}') == {"to": 9191000000000000000, "rate": 0.49}


@pytest.mark.parametrize("content", [b"<html>Down for maintenance</html>", b'{"count": 3, "cdr": [{', b""])
def test_body_that_is_not_json_is_retried_as_a_maintenance_page(content):
    answer = response(content=content)
    assert not isinstance(body_of(answer), (dict, list))
    assert not is_json(body_of(answer))
    assert code_of(body_of(answer)) is None
    row, resolution = resolve(answer, cdr_lacking)
    assert row is NOT_JSON and meaning(row) == meaning(resolution) == RETRY
    assert "not JSON" in row.error_message and "not JSON" in resolution.error_message


@pytest.mark.parametrize(
    "value, count",
    [(5, 5), (0, 0), ("7", 7), (" 12 ", 12), (3.0, 3), (3.5, None), (-1, None), ("-1", None), (True, None)]
    + [(None, None), ("many", None), ([], None), (-2.0, None)],
)
def test_as_count(value, count):
    assert as_count(value) == count


@pytest.mark.parametrize(
    "body, telecmi",
    [
        ({"code": 404, "msg": "Invalid user token"}, True),
        ({"code": "404", "error": True}, True),
        ({"code": 200, "msg": "ok", "count": 1}, True),
        ({"message": "Not found"}, False),  # a gateway's, or a framework's 404
        ({"code": 404, "message": "Not found"}, False),
        ({"msg": "no code"}, False),
        ([{"code": 404, "msg": "x"}], False),
        ("text", False),
    ],
)
def test_from_telecmi_tells_its_envelope_from_a_gateways(body, telecmi):
    assert from_telecmi(body) is telecmi


def test_message_of_takes_msg_then_message_then_error_on_one_line():
    assert message_of({"msg": "Invalid\n  user   token", "message": "x"}) == "Invalid user token"
    assert message_of({"message": "Not found"}) == "Not found"
    assert message_of({"error": "bad"}) == "bad"
    assert message_of({"code": 200}) == ""
    assert message_of("text") == ""
    assert len(message_of({"msg": "x" * 1000})) == 200


def test_message_of_an_error_flag_is_no_message():
    assert message_of({"code": 404, "error": True}) == ""


def test_message_of_masks_a_secret_telecmi_echoes():
    register_secret("echoed-secret-value-42")
    assert message_of({"msg": "Invalid secret echoed-secret-value-42"}) == "Invalid secret ****"
    # Cut by TeleCMI: the piece left is still masked.
    assert "echoed-s" not in message_of({"msg": "Invalid secret echoed-secret-va"})


@pytest.mark.parametrize(
    "status, body, limited",
    [(429, {}, True), (200, {"code": 429, "msg": "Too many"}, True), (200, {"code": "429"}, True)]
    + [(200, {"code": 200}, False), (503, {}, False)],
)
def test_rate_limited_by_status_or_by_body_code(status, body, limited):
    assert rate_limited(response(status, body)) is limited


# ----------------------------------------------------------------------------------------------- rows


@pytest.mark.parametrize(
    "status, body, row, means",
    [
        (200, {"code": 200, "count": 1, "cdr": [CALL]}, SERVED, OK),
        (200, {"code": "200", "count": "1", "cdr": [CALL]}, SERVED, OK),
        (200, {"code": 400, "msg": "Parameter missing"}, MALFORMED, FAIL),
        (400, {"code": 400, "msg": "Parameter missing"}, MALFORMED, FAIL),
        (200, {"code": 401, "msg": "not allowed"}, REFUSED, RETRY),
        (403, {"code": 403, "msg": "not allowed"}, REFUSED, RETRY),
        (200, {"code": 404, "msg": "Invalid user token"}, WRONG_CREDENTIALS, CONFIG),
        (404, {"code": 404, "msg": "Invalid user token"}, WRONG_CREDENTIALS, CONFIG),
        (404, {"code": 404, "error": True}, WRONG_CREDENTIALS, CONFIG),
        (200, {"code": "404", "msg": "Authentication Failed"}, WRONG_CREDENTIALS, CONFIG),
        (200, {"code": 407, "msg": "Authentication Failed"}, WRONG_CREDENTIALS, CONFIG),
        (200, {"code": 500, "msg": "Internal"}, RETRY_SERVER, RETRY),
        (503, {"code": 503, "msg": "busy"}, RETRY_SERVER, RETRY),
        (200, {"code": 599}, RETRY_SERVER, RETRY),
        (200, {"code": 418, "msg": "teapot"}, UNKNOWN_CODE, FAIL),
        (200, {"code": 302}, UNKNOWN_CODE, FAIL),
        (200, {"code": "cmi-9999"}, UNKNOWN_CODE, FAIL),
        (200, {"code": "cmi-2000", "count": 1, "cdr": [CALL]}, UNKNOWN_CODE, FAIL),  # 2000 is a success on India only
        (401, {"message": "proxy says no"}, PROXY_REFUSED, CONFIG),
        (403, {"message": "proxy says no"}, PROXY_REFUSED, CONFIG),
        (404, {"message": "no route"}, ENDPOINT_MISSING, IGNORE),
        (404, {"message": "Not found"}, ENDPOINT_MISSING, IGNORE),
        (404, {"code": 404, "message": "Not found"}, ENDPOINT_MISSING, IGNORE),  # a code, but not TeleCMI's envelope
        (404, {}, ENDPOINT_MISSING, IGNORE),
        (502, {"message": "bad gateway"}, RETRY_STATUS, RETRY),
        (500, {}, RETRY_STATUS, RETRY),
        (409, {"message": "conflict"}, UNKNOWN_STATUS, FAIL),
        (422, {}, UNKNOWN_STATUS, FAIL),
        (301, {}, REDIRECT, CONFIG),
        (307, {"message": "moved"}, REDIRECT, CONFIG),
        (429, {}, RATE_LIMITED, LIMITED),
        (429, {"code": 200, "count": 1, "cdr": [CALL]}, RATE_LIMITED, LIMITED),
        (200, {"code": 429, "msg": "Too many requests"}, RATE_LIMITED, LIMITED),
        (503, {"code": "429"}, RATE_LIMITED, LIMITED),  # a 429 whatever else the answer says
    ],
)
def test_every_answer_has_one_row(status, body, row, means):
    found, resolution = resolve(response(status, body), cdr_lacking, api_url=API)
    assert found is row
    assert meaning(found) == meaning(resolution) == means


def test_the_rows_with_a_meaning_of_their_own_are_what_the_cdk_acts_on():
    assert meaning(SERVED) == OK and SERVED.error_message is None
    assert meaning(REFUSED) == RETRY  # retried like any fault; through every retry, AccessRefused
    assert meaning(WRONG_CREDENTIALS) == CONFIG
    assert meaning(ENDPOINT_MISSING) == IGNORE  # handed back to the caller, who raises EndpointMissing
    assert meaning(UNREACHABLE) == RETRY  # until the handler gives up on an address that never answered
    assert meaning(RATE_LIMITED) == LIMITED
    assert BODY_CODES[429] is RATE_LIMITED and STATUSES[429] is RATE_LIMITED
    assert BODY_CODES[401] is BODY_CODES[403] is REFUSED
    assert BODY_CODES[404] is BODY_CODES[407] is WRONG_CREDENTIALS
    assert STATUS_WITHOUT_CODE[404] is ENDPOINT_MISSING


@pytest.mark.parametrize(
    "status, body",
    [(429, {}), (200, {"code": 429}), (200, {"code": "cmi-429"}), (404, {"code": 429}), (502, {"code": 429})]
    + [(200, {"code": 200}), (503, {}), (404, {}), (200, {"code": [429]}), (200, {"code": {"a": 1}})],
)
def test_rate_limited_is_the_table_saying_so(status, body):
    answer = response(status, body)
    assert rate_limited(answer) is (resolve(answer)[0] is RATE_LIMITED)
    assert rate_limited(answer) is (429 in (status, code_of(body)))


@pytest.mark.parametrize("status", [408, 425, 500, 502, 503, 504, 520, 521, 522, 523, 524, 599])
@pytest.mark.parametrize(
    "body",
    [
        {"code": 200, "count": 1, "cdr": [CALL]},  # whatever the body says
        {"code": 404, "msg": "Invalid user token"},
        {"code": 403, "msg": "not allowed"},
        {"code": 400, "msg": "Parameter missing"},
        {"message": "Not found"},
        None,
    ],
)
def test_busy_statuses_are_retried_whatever_the_body(status, body):
    content = b"<html>Origin is unreachable</html>" if body is None else None
    assert status in RETRIED_STATUSES and STATUSES[status] is RETRY_STATUS
    row, resolution = resolve(response(status, body, content=content), cdr_lacking)
    assert row is RETRY_STATUS and meaning(resolution) == RETRY


def test_retried_statuses_are_408_425_and_every_5xx():
    assert frozenset({408, 425, *range(500, 600)}) == RETRIED_STATUSES
    assert not {200, 400, 401, 403, 404, 407, 409, 429} & RETRIED_STATUSES
    assert set(STATUSES) == {429, *RETRIED_STATUSES}


def test_a_busy_status_with_a_server_code_says_so():
    assert resolve(response(502, {"code": 503, "msg": "busy"}), cdr_lacking)[0] is RETRY_SERVER
    assert resolve(response(502, {"code": 200}), cdr_lacking)[0] is RETRY_STATUS


def test_html_404_without_a_code_means_the_path_is_missing():
    row, resolution = resolve(response(404, content=b"<html>Cannot POST /v3/user/list</html>"), cdr_lacking)
    assert row is ENDPOINT_MISSING and meaning(resolution) == IGNORE
    assert "{path}" in row.error_message and "{api_url}" in row.error_message
    assert OUT_MISSED in resolution.error_message


@pytest.mark.parametrize(
    "body, lacks",
    [
        ({"code": 200, "msg": "ok"}, "the field 'count'"),
        ({"code": 200, "count": "x", "cdr": None}, "the field 'count'"),
        ({"msg": "ok"}, "the field 'count'"),
        ({"code": 200, "count": 3}, "the list 'cdr'"),
        ({"code": 200, "count": 1, "cdr": [1]}, "a list of records under 'cdr'"),
        ({"code": 200, "count": 1, "cdr": "none"}, "a list of records under 'cdr'"),
    ],
)
def test_a_200_without_the_expected_fields_is_retried_naming_what_it_lacks(body, lacks):
    row, resolution = resolve(response(200, body), cdr_lacking)
    assert row is LACKS_FIELDS and meaning(resolution) == RETRY
    assert f"lacks {lacks}" in resolution.error_message


def test_a_200_that_is_json_but_not_an_object_lacks_a_json_object():
    for body in ([CALL], "text", 3):
        row, resolution = resolve(response(200, body), cdr_lacking)
        assert row is LACKS_FIELDS and meaning(resolution) == RETRY
        assert "lacks a JSON object" in resolution.error_message


def test_lacking_is_only_asked_about_a_successful_answer():
    asked = []

    def lacking(body):
        asked.append(body)
        return None

    resolve(response(200, {"code": 400, "msg": "bad"}), lacking)
    resolve(response(404, {"message": "Not found"}), lacking)
    assert asked == []
    assert resolve(response(200, {"code": 200, "token": "t"}), lacking)[0] is SERVED
    assert asked == [{"code": 200, "token": "t"}]


def test_india_envelope_without_a_code_is_read():
    india = {"total": 2, "cdr": [CALL, CALL]}
    assert resolve(response(200, india), listing("cdr", "total"))[0] is SERVED


def test_india_success_code_2000_is_a_success_with_the_platforms_codes():
    body = {"code": "cmi-2000", "status": "success", "count": 1, "agents": [{"agent_id": "101_1"}]}
    assert resolve(response(200, body), listing("agents", "count"), INDIA_CODES)[0] is SERVED
    assert resolve(response(200, body), listing("agents", "count"))[0] is UNKNOWN_CODE


def test_the_platforms_codes_replace_the_default_table():
    codes = {200: ErrorResolution(ResponseAction.FAIL, FailureType.system_error, "no")}
    row, resolution = resolve(response(200, {"code": 200, "count": 0}), cdr_lacking, codes)
    assert row is codes[200] and meaning(resolution) == FAIL and resolution.error_message == "no"


def test_a_resolution_is_said_afresh_and_its_row_never_changes():
    answer = response(200, {"code": 418, "msg": "teapot"})
    template = UNKNOWN_CODE.error_message
    row, resolution = resolve(answer, cdr_lacking)
    assert row is UNKNOWN_CODE and resolution is not UNKNOWN_CODE
    assert resolution.error_message == "TeleCMI answered code 418 (HTTP 200): teapot"
    assert UNKNOWN_CODE.error_message == template


def test_every_message_of_the_tables_formats_on_one_line():
    rows = [*BODY_CODES.values(), *STATUS_WITHOUT_CODE.values(), *STATUSES.values(), RETRY_SERVER, RETRY_STATUS]
    rows += [REDIRECT, LACKS_FIELDS, NOT_JSON, UNKNOWN_CODE, UNKNOWN_STATUS, ADDRESS_IN_DOUBT]
    rows += [row for _, row in NETWORK_FAULTS]
    answers = [response(s, b) for s, b in [(200, {"code": 418}), (502, {}), (418, {}), (200, {"code": 200})]]
    rows += [resolve(answer, cdr_lacking)[0] for answer in answers]
    for row in rows:
        assert isinstance(row.response_action, ResponseAction)
        if row is SERVED:
            continue
        assert isinstance(row.failure_type, FailureType)
        text = row.error_message.format(
            status=418,
            code=418,
            msg="m",
            reason="r",
            text="'t'",
            api_url=API,
            path=OUT_MISSED,
            cause="Connection refused",
            location="https://elsewhere",
            lacking="the field 'count'",
            what="outgoing_missed_calls",
        )
        assert "\n" not in text and "{" not in text
    for answer in answers:
        said = resolve(answer, cdr_lacking, api_url=API)[1].error_message
        assert "\n" not in said and "{api_url}" not in said


def test_say_fills_in_the_answer_masked_on_one_line():
    register_secret("s3cret-in-an-echo-77")
    answer = response(
        404,
        content=b"<html>\n  Cannot POST /v3/user/list with s3cret-in-an-echo-77\n</html>",
        path="/v3/user/list",
    )
    row, resolution = resolve(answer, cdr_lacking, api_url=API)
    text = say(row, answer, api_url=API)
    assert text == f"TeleCMI has no endpoint /v3/user/list at api_url {API} (HTTP 404): check api_url and region"
    assert resolution.error_message == text
    text = say(
        ErrorResolution(ResponseAction.FAIL, FailureType.system_error, "HTTP {status}, code {code}, {msg}: {text}"),
        answer,
    )
    assert "HTTP 404, code None, no message:" in text
    assert "s3cret-in-an-echo-77" not in text and "****" in text and "\n" not in text


def test_say_names_where_a_redirect_goes():
    answer = response(301, {}, headers={"Location": "https://new.telecmi.com/v2/user/out_missed"})
    assert resolve(answer, cdr_lacking)[0] is REDIRECT
    text = say(REDIRECT, answer, api_url=API)
    assert "HTTP 301 to https://new.telecmi.com/v2/user/out_missed" in text and API in text


def test_say_leaves_a_value_it_was_not_given_blank():
    row = ErrorResolution(ResponseAction.RETRY, FailureType.transient_error, "a {nothing} b {cause}")
    assert say(row, None, cause="c") == "a b c"


def test_say_cuts_a_long_answer():
    answer = response(200, {"code": 418, "msg": "x" * 2000})
    text = resolve(answer, cdr_lacking)[1].error_message
    assert len(text) <= 400 and text.endswith("...")
    assert say(UNKNOWN_CODE, answer) == text


def test_the_exceptions_of_answers():
    assert issubclass(AccessRefused, Exception)
    missing = EndpointMissing(message="TeleCMI has no endpoint /v3/user/list")
    assert missing.message == "TeleCMI has no endpoint /v3/user/list"


# ---------------------------------------------------------------------------------------- Retry-After


def test_retry_after_in_seconds():
    assert retry_after_s(response(429, {}, headers={"Retry-After": "2"})) == 2.0
    assert retry_after_s(response(429, {}, headers={"Retry-After": "0.5"})) == 0.5
    # Not clamped any more: the raw value, negative included; the pacer judges it.
    assert retry_after_s(response(429, {}, headers={"Retry-After": "-3"})) == -3.0
    assert retry_after_s(response(429, {}, headers={"Retry-After": "0"})) == 0.0


def test_retry_after_as_an_http_date():
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=100), usegmt=True)
    assert 95 < retry_after_s(response(429, {}, headers={"Retry-After": soon})) <= 100
    past = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)
    late = retry_after_s(response(429, {}, headers={"Retry-After": past}))
    assert -86_400 - 5 < late < -86_400 + 5


@pytest.mark.parametrize("value", ["soon", "", "Wed, 99 Foo 2015", "nan", "NaN"])
def test_retry_after_that_is_garbage_is_ignored(value):
    assert retry_after_s(response(429, {}, headers={"Retry-After": value})) is None
    assert retry_after_s(response(429, {})) is None


def test_retry_after_of_infinity_is_passed_on_for_the_pacer_to_judge():
    assert retry_after_s(response(429, {}, headers={"Retry-After": "inf"})) == float("inf")


# ------------------------------------------------------------------------------------- network causes


def _failure_of(url):
    try:
        requests.post(url, timeout=5)
    except requests.RequestException as error:
        return error
    raise AssertionError(f"{url} answered")


@pytest.mark.parametrize(
    "url, cause, host",
    [
        ("http://127.0.0.1:9/v2/user/login", "Connection refused", "127.0.0.1"),
        ("http://no-such-host.invalid/v2/user/login", "", "no-such-host.invalid"),
    ],
)
def test_network_cause_is_short_and_names_the_host(url, cause, host):
    error = _failure_of(url)
    text = network_cause(error)
    assert cause in text and host in text
    assert "HTTPConnectionPool" not in text and "Max retries" not in text
    assert len(text) < 100 and "\n" not in text


def test_network_cause_of_an_exception_without_errno():
    assert network_cause(requests.ReadTimeout("read timed out")) == "read timed out"


def test_network_cause_follows_the_cause_chain():
    try:
        try:
            raise OSError(111, "Connection refused")
        except OSError as inner:
            raise requests.ConnectionError("HTTPConnectionPool(host='x.example', port=443): failed") from inner
    except requests.ConnectionError as error:
        assert network_cause(error) == "Connection refused (host x.example)"


def test_network_cause_of_a_cycle_ends():
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert network_cause(first) == "b"


@pytest.mark.parametrize(
    "error, row, means",
    [
        (requests.ReadTimeout("slow"), TIMED_OUT, RETRY),
        (requests.ConnectTimeout("slow"), TIMED_OUT, RETRY),  # a ConnectionError too, but a timeout first
        (requests.exceptions.InvalidURL("x"), UNUSABLE_URL, CONFIG),
        (requests.exceptions.InvalidSchema("x"), UNUSABLE_URL, CONFIG),
        (requests.exceptions.MissingSchema("x"), UNUSABLE_URL, CONFIG),
        (requests.ConnectionError("refused"), UNREACHABLE, RETRY),
        (requests.exceptions.ChunkedEncodingError("cut"), CUT_OFF, RETRY),
        (requests.RequestException("other"), REQUEST_FAILED, RETRY),
    ],
)
def test_network_faults_most_specific_first(error, row, means):
    assert next(found for kind, found in NETWORK_FAULTS if isinstance(error, kind)) is row
    found, resolution = resolve(error, api_url=API)
    assert found is row and meaning(found) == meaning(resolution) == means
    assert "{" not in resolution.error_message


def test_a_network_fault_is_said_with_its_cause():
    row, resolution = resolve(requests.ConnectionError("[Errno 111] Connection refused"), api_url=API)
    assert row is UNREACHABLE
    assert resolution.error_message == f"Cannot reach TeleCMI at {API}: Connection refused"
    assert resolve(None)[1].error_message == "The request to TeleCMI failed (no answer)"


def test_a_retry_after_date_is_relative_to_now():
    at = datetime.now(UTC) + timedelta(seconds=30)
    header = format_datetime(at, usegmt=True)
    waited = retry_after_s(response(429, {}, headers={"Retry-After": header}))
    assert abs(waited - (at.replace(microsecond=0).timestamp() - time.time())) < 2


# ------------------------------------------------------------------- ambiguous answers name every cause

EXTRA = "/extra"  # an api_url with a path too many: the server answers in TeleCMI's envelope, HTTP 404
NOT_FOUND = {"code": 404, "msg": "Not found"}
CREDENTIAL_KINDS = {
    "app": Credentials(kind="app", app_id=1111112, app_secret="app-s3cret-22"),
    "login": Credentials(kind="login", user_id="101_1111112", password="pw-77-secret"),
    "token": Credentials(kind="token", token="tok-en-99-secret"),
}
FIELDS = {
    "app": "credentials.app_id, credentials.app_secret",
    "login": "Check user_id",
    "token": "invalid or expired",
}


def first_request(kind: str, url: str) -> HttpRequest:
    """The first request the connector sends with `kind` credentials for a page of the first call list."""
    if kind == "login":
        return HttpRequest(url=url + "/v2/user/login", body={"id": "101_1111112", "password": "pw-77-secret"})
    if kind == "app":
        body = {"appid": 1111112, "secret": "app-s3cret-22", "start_date": 1, "end_date": 5, "page": 1, "limit": 1}
        return HttpRequest(url=url + ACCOUNT_PATHS[0], body=body)
    return HttpRequest(
        url=url + OUT_MISSED, body={"token": "tok-en-99-secret", "from": 1, "to": 5, "page": 1, "limit": 1}
    )


ACCOUNT_PATHS = [row.on(ACCOUNT)[0].path for row in CALL_LISTS if row.stream == "outgoing_missed_calls"]


def failure_of_a_page(kind: str, url: str) -> AirbyteTracedException:
    platform = ACCOUNT if kind == "app" else USER
    telecmi = TelecmiApi(url, PLATFORMS[platform], CREDENTIAL_KINDS[kind], 2, logging.getLogger("airbyte.answers"))
    (endpoint,) = telecmi.endpoints(next(row for row in CALL_LISTS if row.stream == "outgoing_missed_calls"))
    with pytest.raises(AirbyteTracedException) as error:
        endpoint.page(1, 1, (1, 5))
    return error.value


@pytest.mark.parametrize("kind", list(CREDENTIAL_KINDS))
def test_an_http_404_in_telecmis_envelope_names_the_credentials_and_api_url(http_mocker, kind):
    url = API + EXTRA
    http_mocker.post(first_request(kind, url), HttpResponse(body=json.dumps(NOT_FOUND), status_code=404))
    error = failure_of_a_page(kind, url)
    assert error.failure_type == FailureType.config_error
    message = error.message
    assert FIELDS[kind] in message and "Not found" in message
    assert f"api_url {url} is not TeleCMI's API address" in message
    assert EXTRA + "/v2/" in message  # the path asked, with the path too many in it
    assert "\n" not in message
    assert not [value for value in ("app-s3cret-22", "pw-77-secret", "tok-en-99-secret") if value in message]


@pytest.mark.parametrize("kind", list(CREDENTIAL_KINDS))
def test_telecmis_own_answer_to_wrong_credentials_names_the_credentials_only(http_mocker, kind):
    # HTTP 200 with code 404: the path is TeleCMI's, only the credentials can be wrong.
    http_mocker.post(first_request(kind, API), HttpResponse(body=json.dumps(NOT_FOUND), status_code=200))
    message = failure_of_a_page(kind, API).message
    assert FIELDS[kind] in message and "api_url" not in message


def test_a_404_that_doubts_the_address_is_only_an_http_404():
    assert address_in_doubt(response(404, NOT_FOUND))
    assert not address_in_doubt(response(200, NOT_FOUND))
    assert not address_in_doubt(response(200, {"code": 407, "msg": "expired"}))
    text = say(ADDRESS_IN_DOUBT, response(404, NOT_FOUND, path="/extra/v2/answered"), api_url=API + "/extra")
    assert text == (
        f"or api_url {API}/extra is not TeleCMI's API address: HTTP 404 for /extra/v2/answered, a path too many "
        "or another server"
    )


def test_an_answer_that_is_not_json_names_api_url_as_well_as_a_maintenance_page():
    text = resolve(response(content=b"<html>Welcome to TeleCMI</html>"), cdr_lacking, api_url=API)[1].error_message
    assert "a maintenance page" in text and f"api_url {API} is a web page" in text


def test_an_answer_without_what_telecmi_always_sends_names_api_url_as_well():
    text = resolve(response(200, {"status": "ok"}), cdr_lacking, api_url=API)[1].error_message
    assert "lacks the field 'count'" in text and f"api_url {API} is not its API" in text


@pytest.mark.parametrize(
    "value, count",
    [("12\u00b2", None), ("\u0661\u0662", None), ("\uff11\uff12", None), ("9" * 5000, None), (" 12\n", 12)],
)
def test_a_count_is_ascii_digits_whatever_str_isdigit_says(value, count):
    assert as_count(value) == count  # "12²" crashed the read of a page (isdigit() yes, int() no)


@pytest.mark.parametrize(
    "code, number", [("cmi-2000\u00b2", "cmi-2000\u00b2"), ("\u0662\u0660\u0660", "\u0662\u0660\u0660"), (" 404 ", 404)]
)
def test_a_code_is_a_number_only_in_ascii_digits(code, number):
    assert code_of({"code": code}) == number
