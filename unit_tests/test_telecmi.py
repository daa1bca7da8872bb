"""Talking to TeleCMI: what every answer means, secrets, tokens, and the transport."""

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.test.mock_http import HttpRequest, HttpResponse
from airbyte_cdk.utils.airbyte_secrets_utils import filter_secrets
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.pacing import Pacer
from source_telecmi.telecmi import (
    BODY_CODES,
    NETWORK_FAULTS,
    REDIRECT,
    RETRY_SERVER,
    STATUS_WITHOUT_CODE,
    AccessRefused,
    Credentials,
    TelecmiApi,
    TokenKeeper,
    Transport,
    as_count,
    body_of,
    code_of,
    config_error,
    decide,
    listing,
    network_cause,
    register_secret,
    retry_after_s,
)

API = "https://rest.telecmi.com"
OUT_MISSED = "/v2/user/out_missed"
LOGIN = API + "/v2/user/login"
LOGGER = logging.getLogger("airbyte.test_telecmi")
CALL = {"cmiuid": "a", "time": 1764583200123}


def response(status=200, body=None, content=None, headers=None, path=OUT_MISSED):
    answer = requests.Response()
    answer.status_code = status
    answer._content = content if content is not None else json.dumps(body).encode()
    answer.headers.update(headers or {})
    answer.request = requests.Request("POST", API + path).prepare()
    return answer


def cdr_usable(body):
    return isinstance(body, dict) and isinstance(body.get("cdr"), list) and as_count(body.get("count")) is not None


# ------------------------------------------------------------------------------------ codes and bodies


@pytest.mark.parametrize(
    "body, code",
    [
        ({"code": 200}, 200),
        ({"code": 404}, 404),
        ({"code": "200"}, 200),
        ({"code": "404"}, 404),
        ({"code": " 407 "}, 407),
        ({"code": "cmi-2000"}, 200),
        ({"code": "CMI-2000"}, 200),
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
    assert decide(answer, cdr_usable).action == "ok"


def test_body_of_replaces_bytes_that_are_not_utf8():
    answer = response(content=b'{"code": 200, "count": 1, "cdr": [{"name": "Ann \xf0\x9f", "time": 1}]}')
    assert body_of(answer)["cdr"][0]["name"] == "Ann \ufffd"
    assert decide(answer, cdr_usable).action == "ok"


@pytest.mark.parametrize("content", [b"<html>Down for maintenance</html>", b'{"count": 3, "cdr": [{', b""])
def test_body_that_is_not_json_is_retried_as_a_maintenance_page(content):
    answer = response(content=content)
    assert not isinstance(body_of(answer), (dict, list))
    assert code_of(body_of(answer)) is None
    decision = decide(answer, cdr_usable)
    assert decision.action == "retry"
    assert "not JSON" in decision.say


@pytest.mark.parametrize(
    "value, count",
    [(5, 5), (0, 0), ("7", 7), (" 12 ", 12), (3.0, 3), (3.5, None), (-1, None), ("-1", None), (True, None)]
    + [(None, None), ("many", None), ([], None)],
)
def test_as_count(value, count):
    assert as_count(value) == count


# ------------------------------------------------------------------------------------------ decisions


@pytest.mark.parametrize(
    "status, body, action",
    [
        (200, {"code": 200, "count": 1, "cdr": [CALL]}, "ok"),
        (200, {"code": "200", "count": "1", "cdr": [CALL]}, "ok"),
        (200, {"code": 400, "msg": "Parameter missing"}, "fail"),
        (400, {"code": 400, "msg": "Parameter missing"}, "fail"),
        (200, {"code": 401, "msg": "not allowed"}, "refused"),
        (403, {"code": 403, "msg": "not allowed"}, "refused"),
        (200, {"code": 404, "msg": "Invalid user token"}, "credentials"),
        (404, {"code": 404, "msg": "Invalid user token"}, "credentials"),
        (200, {"code": "404", "msg": "Authentication Failed"}, "credentials"),
        (200, {"code": 407, "msg": "Authentication Failed"}, "credentials"),
        (200, {"code": 500, "msg": "Internal"}, "retry"),
        (503, {"code": 503, "msg": "busy"}, "retry"),
        (200, {"code": 599}, "retry"),
        (200, {"code": 418, "msg": "teapot"}, "fail"),
        (200, {"code": 302}, "fail"),
        (200, {"code": "cmi-9999"}, "fail"),
        (401, {"message": "proxy says no"}, "config"),
        (403, {"message": "proxy says no"}, "config"),
        (404, {"message": "no route"}, "missing"),
        (502, {"message": "bad gateway"}, "retry"),
        (500, {}, "retry"),
        (409, {"message": "conflict"}, "fail"),
        (422, {}, "fail"),
        (301, {}, "config"),
        (307, {"message": "moved"}, "config"),
    ],
)
def test_every_answer_has_one_decision(status, body, action):
    assert decide(response(status, body), cdr_usable).action == action


def test_html_404_without_a_code_means_the_path_is_missing():
    decision = decide(response(404, content=b"<html>Cannot POST /v3/user/list</html>"), cdr_usable)
    assert decision.action == "missing"
    assert "{path}" in decision.say and "{api_url}" in decision.say


def test_a_200_without_the_expected_fields_is_retried():
    for body in ({"code": 200, "msg": "ok"}, {"code": 200, "count": "x", "cdr": None}, {"msg": "ok"}):
        decision = decide(response(200, body), cdr_usable)
        assert decision.action == "retry"
        assert "lacks the expected fields" in decision.say


def test_india_envelope_without_a_code_is_read():
    india = {"total": 2, "cdr": [CALL, CALL]}
    assert decide(response(200, india), lambda b: isinstance(b.get("cdr"), list) and "total" in b).action == "ok"


def test_every_message_of_the_tables_formats_on_one_line():
    decisions = [*BODY_CODES.values(), *STATUS_WITHOUT_CODE.values(), RETRY_SERVER, REDIRECT]
    decisions += [decision for _, decision in NETWORK_FAULTS]
    decisions += [decide(response(s, b), cdr_usable) for s, b in [(200, {"code": 418}), (502, {}), (418, {})]]
    for decision in decisions:
        text = decision.say.format(
            status=418,
            code=418,
            msg="m",
            text="'t'",
            api_url=API,
            path=OUT_MISSED,
            cause="Connection refused",
            location="https://elsewhere",
        )
        assert "\n" not in text and "{" not in text


# ---------------------------------------------------------------------------------------- Retry-After


def test_retry_after_in_seconds():
    assert retry_after_s(response(429, {}, headers={"Retry-After": "2"})) == 2.0
    assert retry_after_s(response(429, {}, headers={"Retry-After": "0.5"})) == 0.5
    assert retry_after_s(response(429, {}, headers={"Retry-After": "-3"})) == 0.0


def test_retry_after_as_an_http_date():
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=100), usegmt=True)
    assert 95 < retry_after_s(response(429, {}, headers={"Retry-After": soon})) <= 100
    past = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)
    assert retry_after_s(response(429, {}, headers={"Retry-After": past})) == 0.0


@pytest.mark.parametrize("value", ["soon", "", "Wed, 99 Foo 2015"])
def test_retry_after_that_is_garbage_is_ignored(value):
    assert retry_after_s(response(429, {}, headers={"Retry-After": value})) is None
    assert retry_after_s(response(429, {})) is None


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


# -------------------------------------------------------------------------------------------- secrets

PASSWORD = ' pa"ss\\wörd 1 '


def _forms(secret):
    forms = {
        "raw": secret,
        "trimmed": secret.strip(),
        "url-quoted": quote(secret, safe=""),
    }
    for ascii_ in (True, False):
        once = json.dumps(secret, ensure_ascii=ascii_)[1:-1]
        forms[f"json ascii={ascii_}"] = once
        forms[f"json trimmed ascii={ascii_}"] = json.dumps(secret.strip(), ensure_ascii=ascii_)[1:-1]
        for ascii_again in (True, False):
            forms[f"json twice ascii={ascii_},{ascii_again}"] = json.dumps(
                json.dumps(secret, ensure_ascii=ascii_), ensure_ascii=ascii_again
            )[1:-1]
    return forms


@pytest.mark.parametrize("form", sorted(_forms(PASSWORD)))
def test_a_registered_secret_is_masked_in_every_form(form):
    register_secret(PASSWORD)
    text = _forms(PASSWORD)[form]
    masked = filter_secrets(f"request body: {{{text}}} end")
    assert "****" in masked
    assert text not in masked
    assert "wörd" not in masked and "w\\u00f6rd" not in masked and "w%C3%B6rd" not in masked


def test_a_secret_in_a_logged_json_body_is_masked():
    register_secret(PASSWORD)
    logged = json.dumps({"message": json.dumps({"id": "101_1", "password": PASSWORD})})
    assert "pa" not in filter_secrets(logged).replace("password", "")


def test_nothing_to_register_is_fine():
    register_secret(None)
    register_secret("ab")  # too short to mask: masking every "ab" would garble every message
    assert filter_secrets("ab abc") == "ab abc"


# ------------------------------------------------------------------------------------------- tokens

LOGIN_CREDENTIALS = Credentials(kind="login", user_id="101_1111112", password="pw")


class Logins:
    """A login that hands out token-1, token-2, ... and counts its calls."""

    def __init__(self, wait_s=0.0, fail=None):
        self.calls = 0
        self._wait_s = wait_s
        self._fail = fail
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self.calls += 1
            number = self.calls
        if self._wait_s:
            time.sleep(self._wait_s)
        if self._fail is not None:
            raise self._fail
        return f"token-{number}"


def test_login_happens_lazily_and_once():
    logins = Logins()
    keeper = TokenKeeper(LOGIN_CREDENTIALS, logins)
    assert logins.calls == 0
    assert keeper.current() == "token-1"
    assert keeper.current() == "token-1"
    assert logins.calls == keeper.logins == 1


def test_a_token_that_served_requests_is_renewed_however_often_it_expires():
    logins = Logins()
    keeper = TokenKeeper(LOGIN_CREDENTIALS, logins)
    for expected in range(1, 12):
        token = keeper.current()
        assert token == f"token-{expected}"
        keeper.accepted(token)
        keeper.renew(token, "Invalid user token")
    assert keeper.logins == 12


def test_eight_workers_meeting_an_expired_token_log_in_once():
    logins = Logins(wait_s=0.02)
    keeper = TokenKeeper(LOGIN_CREDENTIALS, logins)
    stale = keeper.current()
    keeper.accepted(stale)
    start = threading.Barrier(8)
    errors = []

    def worker():
        start.wait()
        try:
            keeper.renew(stale, "Invalid user token")
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert logins.calls == 2  # the first login, and one renewal for all eight
    assert keeper.current() == "token-2"


def test_fresh_tokens_rejected_twice_in_a_row_are_a_config_error():
    keeper = TokenKeeper(LOGIN_CREDENTIALS, Logins())
    keeper.renew(keeper.current(), "Invalid user token")  # once may be bad luck: log in again
    with pytest.raises(AirbyteTracedException) as error:
        keeper.renew(keeper.current(), "Invalid user token")
    assert error.value.failure_type == FailureType.config_error
    assert "101_1111112" in error.value.message and "first use" in error.value.message


def test_a_rejection_after_an_accepted_token_starts_counting_again():
    keeper = TokenKeeper(LOGIN_CREDENTIALS, Logins())
    keeper.renew(keeper.current(), "Invalid user token")  # token-1 rejected fresh
    keeper.accepted(keeper.current())  # token-2 works
    keeper.renew(keeper.current(), "Invalid user token")  # expired: renewed
    keeper.renew(keeper.current(), "Invalid user token")  # token-3 rejected fresh: one chance more
    assert keeper.current() == "token-4"


def test_a_failed_login_is_remembered_and_not_tried_again():
    refused = config_error("TeleCMI refused the login of user 101_1111112")
    logins = Logins(fail=refused)
    keeper = TokenKeeper(LOGIN_CREDENTIALS, logins)
    for _ in range(3):
        with pytest.raises(AirbyteTracedException) as error:
            keeper.current()
        assert error.value is refused
    assert logins.calls == 1


def test_a_login_that_failed_for_a_transient_reason_is_tried_again():
    transient = AirbyteTracedException(message="TeleCMI is down", failure_type=FailureType.transient_error)
    logins = Logins(fail=transient)
    keeper = TokenKeeper(LOGIN_CREDENTIALS, logins)
    for _ in range(2):
        with pytest.raises(AirbyteTracedException):
            keeper.current()
    assert logins.calls == 2


def test_a_rejected_fixed_token_is_a_config_error():
    logins = Logins()
    keeper = TokenKeeper(Credentials(kind="token", token="fixed"), logins)
    assert keeper.current() == "fixed"
    keeper.accepted("fixed")
    with pytest.raises(AirbyteTracedException) as error:
        keeper.renew("fixed", "Invalid user token")
    assert error.value.failure_type == FailureType.config_error
    assert "invalid or expired" in error.value.message
    assert logins.calls == 0


# ---------------------------------------------------------------------- the API over HTTP (HttpMocker)


def cdr(count, records, code=200):
    return HttpResponse(body=json.dumps({"count": count, "cdr": records, "code": code}))


def page_request(token, page=1, limit=10, path=OUT_MISSED):
    return HttpRequest(url=API + path, body={"token": token, "from": 1, "to": 5, "page": page, "limit": limit})


def login_request(password="pw"):
    return HttpRequest(url=LOGIN, body={"id": "101_1111112", "password": password})


REJECTED = HttpResponse(
    body=json.dumps({"code": 404, "error": True, "msg": "Invalid user token, Failed to authenticate token"})
)


FIXED_TOKEN = Credentials(kind="token", token="fixed")


def api(credentials=FIXED_TOKEN, url=API, **options):
    return TelecmiApi(url, "global", credentials, 2, LOGGER, **options)


def printed(record):
    """What the CDK's log formatter would print of a log record: everything in it, secrets masked."""
    return filter_secrets(str(vars(record)))


def test_credentials_are_filled_in_at_send_time_and_never_logged(http_mocker, log):
    http_mocker.post(page_request("secret-token-1"), cdr(1, [CALL]))
    telecmi = TelecmiApi(API, "global", Credentials(kind="token", token="secret-token-1"), 2, log.logger)
    endpoint = telecmi.calls("s", OUT_MISSED)
    page = endpoint.page(1, 5, 1, 10)
    assert (page.count, page.records) == (1, [CALL])
    outbound = [r for r in log.records if r.getMessage() == "Making outbound API request"]
    assert outbound, "the CDK logs each request at DEBUG"
    assert all(b'"page": 1' in r.request_body for r in outbound)
    assert not any("secret-token-1" in str(vars(r)) for r in log.records)


def test_app_credentials_travel_as_appid_and_secret(http_mocker):
    body = {"appid": 1111112, "secret": "app-s3cret", "start_date": 1, "end_date": 5, "page": 1, "limit": 20}
    http_mocker.post(HttpRequest(url=API + "/v2/answered", body=body), cdr(1, [CALL]))
    telecmi = api(Credentials(kind="app", app_id=1111112, app_secret="app-s3cret"))
    assert telecmi.call_api.largest_page == 20
    assert telecmi.calls("s", "/v2/answered").page(1, 5, 1, 20).records == [CALL]


def test_india_sends_the_app_secret_as_token_and_counts_in_total(http_mocker):
    body = {"appid": 1111112, "token": "app-s3cret", "start_date": 1, "end_date": 5, "page": 1, "limit": 10}
    india = "https://piopiy.telecmi.com"
    http_mocker.post(
        HttpRequest(url=india + "/v1/outmissed", body=body),
        HttpResponse(body=json.dumps({"total": 3, "cdr": [CALL]})),
    )
    telecmi = TelecmiApi(india, "india", Credentials(kind="app", app_id=1111112, app_secret="app-s3cret"), 2, LOGGER)
    page = telecmi.calls("s", "/v1/outmissed").page(1, 5, 1, 10)
    assert (page.count, page.records) == (3, [CALL])


def test_india_lists_its_users_with_a_string_success_code(http_mocker):
    india = "https://piopiy.telecmi.com"
    agents = [{"agent_id": "101_1111112", "name": "Ann"}]
    http_mocker.post(
        HttpRequest(
            url=india + "/v1/agent/list", body={"appid": 1111112, "secret": "app-s3cret", "page": 1, "limit": 10}
        ),
        HttpResponse(body=json.dumps({"code": "cmi-2000", "status": "success", "count": 1, "agents": agents})),
    )
    telecmi = TelecmiApi(india, "india", Credentials(kind="app", app_id=1111112, app_secret="app-s3cret"), 2, LOGGER)
    (users,) = telecmi.user_lists()
    assert users.largest_page == 10
    page = users.page(1, 10)
    assert (page.count, page.records) == (1, agents)


def test_user_credentials_have_no_user_list():
    assert api().user_lists() == []


@pytest.mark.parametrize("form", ["http", "body"])
def test_a_429_is_waited_out_without_spending_a_retry(http_mocker, form):
    limited = (
        HttpResponse(body=json.dumps({"msg": "slow down"}), status_code=429, headers={"Retry-After": "1"})
        if form == "http"
        else HttpResponse(body=json.dumps({"code": 429, "msg": "Too many requests"}))
    )
    http_mocker.post(page_request("fixed"), [limited, limited, cdr(1, [CALL])])
    telecmi = api(max_retries=0)
    assert telecmi.calls("s", OUT_MISSED).page(1, 5, 1, 10).records == [CALL]
    assert telecmi.pacer.stats()["rate_limited"] == 2


def test_transient_faults_are_retried(http_mocker):
    http_mocker.post(
        page_request("fixed"),
        [
            HttpResponse(body="<html>maintenance</html>", status_code=200),
            HttpResponse(body="", status_code=502),
            cdr(1, [CALL]),
        ],
    )
    assert api().calls("s", OUT_MISSED).page(1, 5, 1, 10).count == 1


def test_a_persistent_fault_ends_with_an_error_naming_the_cause(http_mocker):
    http_mocker.post(page_request("fixed"), HttpResponse(body="<html>maintenance</html>", status_code=200))
    with pytest.raises(AirbyteTracedException) as error:
        api(max_retries=1).calls("s", OUT_MISSED).page(1, 5, 1, 10)
    assert "not JSON" in f"{error.value.message} {error.value.internal_message}"


def test_login_then_renew_the_token_when_it_expires(http_mocker):
    http_mocker.post(
        login_request(),
        [
            HttpResponse(body=json.dumps({"code": 200, "msg": "ok", "token": "first"})),
            HttpResponse(body=json.dumps({"code": 200, "msg": "ok", "token": "second"})),
        ],
    )
    http_mocker.post(page_request("first", page=1), cdr(12, [CALL]))
    http_mocker.post(page_request("first", page=2), REJECTED)
    http_mocker.post(page_request("second", page=2), cdr(12, [CALL]))
    telecmi = api(LOGIN_CREDENTIALS)
    endpoint = telecmi.calls("s", OUT_MISSED)
    assert endpoint.page(1, 5, 1, 10).count == 12
    assert endpoint.page(1, 5, 2, 10).count == 12
    assert telecmi.tokens.logins == 2


def test_a_login_token_is_masked_before_the_debug_log_prints_the_answer(http_mocker, log):
    http_mocker.post(login_request(), HttpResponse(body=json.dumps({"code": 200, "token": "issued-token-xyz"})))
    TelecmiApi(API, "global", LOGIN_CREDENTIALS, 2, log.logger).sign_in()
    answers = [r for r in log.records if r.getMessage() == "Receiving response"]
    assert answers and "issued-token-xyz" in str(vars(answers[0])), "the CDK logs each answer at DEBUG"
    assert not any("issued-token-xyz" in printed(r) for r in log.records)
    assert not any("pw" in printed(r).replace("password", "") for r in answers)


def test_the_users_passwords_never_reach_the_logs(http_mocker, log):
    agents = [{"agent_id": "101_1111112", "password": "pw-of-ann-101"}, {"agent_id": "102_1", "password": "pw-2-bob"}]
    http_mocker.post(
        HttpRequest(url=API + "/v3/user/list", body={"appid": 1111112, "secret": "app-s3cret", "page": 1, "limit": 20}),
        HttpResponse(body=json.dumps({"code": 200, "status": "success", "count": 2, "agents": agents})),
    )
    credentials = Credentials(kind="app", app_id=1111112, app_secret="app-s3cret")
    (v3, _) = TelecmiApi(API, "global", credentials, 2, log.logger).user_lists()
    assert v3.page(1, 20).count == 2
    assert log.records, "DEBUG on"
    assert not any("pw-of-ann-101" in printed(r) or "pw-2-bob" in printed(r) for r in log.records)


def test_a_wrong_password_is_tried_once_and_named_as_the_users(http_mocker):
    login = login_request("wrong-pw")
    http_mocker.post(
        login,
        HttpResponse(
            body=json.dumps({"code": 404, "error": True, "msg": "Invalid user id or password, authentication failed"})
        ),
    )
    telecmi = api(Credentials(kind="login", user_id="101_1111112", password="wrong-pw"))
    for path in (OUT_MISSED, "/v2/user/answered"):
        with pytest.raises(AirbyteTracedException) as error:
            telecmi.calls("s", path).page(1, 5, 1, 10)
        assert error.value.failure_type == FailureType.config_error
        assert "101_1111112" in error.value.message and "Invalid user id or password" in error.value.message
        assert "wrong-pw" not in error.value.message
    http_mocker.assert_number_of_calls(login, 1)


def test_fresh_tokens_rejected_on_first_use_end_as_a_config_error(http_mocker):
    http_mocker.post(
        login_request(),
        [
            HttpResponse(body=json.dumps({"code": 200, "token": "first"})),
            HttpResponse(body=json.dumps({"code": 200, "token": "second"})),
        ],
    )
    http_mocker.post(page_request("first"), REJECTED)
    http_mocker.post(page_request("second"), REJECTED)
    with pytest.raises(AirbyteTracedException) as error:
        api(LOGIN_CREDENTIALS).calls("s", OUT_MISSED).page(1, 5, 1, 10)
    assert error.value.failure_type == FailureType.config_error
    assert "first use" in error.value.message


def test_a_rejected_fixed_token_ends_as_a_config_error(http_mocker):
    http_mocker.post(page_request("fixed"), REJECTED)
    with pytest.raises(AirbyteTracedException) as error:
        api().calls("s", OUT_MISSED).page(1, 5, 1, 10)
    assert error.value.failure_type == FailureType.config_error
    assert "invalid or expired" in error.value.message


def test_wrong_app_credentials_name_the_app_id_never_the_secret(http_mocker):
    body = {"appid": 1111112, "secret": "wrong-secret", "start_date": 1, "end_date": 5, "page": 1, "limit": 20}
    request = HttpRequest(url=API + "/v2/answered", body=body)
    http_mocker.post(
        request,
        HttpResponse(body=json.dumps({"code": 404, "error": True, "msg": "Authentication Failed"})),
    )
    telecmi = api(Credentials(kind="app", app_id=1111112, app_secret="wrong-secret"))
    with pytest.raises(AirbyteTracedException) as error:
        telecmi.calls("s", "/v2/answered").page(1, 5, 1, 20)
    assert error.value.failure_type == FailureType.config_error
    assert "app id 1111112" in error.value.message and "wrong-secret" not in error.value.message
    http_mocker.assert_number_of_calls(request, 1)


def test_a_refusal_of_the_first_request_skips_the_endpoint(http_mocker):
    http_mocker.post(page_request("fixed"), HttpResponse(body=json.dumps({"code": 403, "msg": "Not enabled"})))
    with pytest.raises(AccessRefused, match="Not enabled"):
        api().calls("s", OUT_MISSED).page(1, 5, 1, 10)


def test_a_refusal_after_the_endpoint_served_is_a_fault_not_a_skip(http_mocker):
    http_mocker.post(page_request("fixed", page=1), cdr(12, [CALL]))
    second = page_request("fixed", page=2)
    http_mocker.post(second, HttpResponse(body=json.dumps({"code": 403, "msg": "Not enabled"})))
    endpoint = api(max_retries=1).calls("s", OUT_MISSED)
    endpoint.page(1, 5, 1, 10)
    with pytest.raises(AirbyteTracedException) as error:
        endpoint.page(1, 5, 2, 10)
    assert not isinstance(error.value, AccessRefused)
    http_mocker.assert_number_of_calls(second, 2)  # retried once


def test_a_path_that_is_not_there_is_a_config_error_naming_api_url(http_mocker):
    http_mocker.post(page_request("fixed"), HttpResponse(body="<html>Cannot POST</html>", status_code=404))
    with pytest.raises(AirbyteTracedException) as error:
        api().calls("s", OUT_MISSED).page(1, 5, 1, 10)
    assert error.value.failure_type == FailureType.config_error
    assert OUT_MISSED in error.value.message and API in error.value.message


def test_an_unreachable_api_fails_fast_naming_the_cause():
    started = time.monotonic()
    with pytest.raises(AirbyteTracedException) as error:
        api(url="http://127.0.0.1:9").calls("s", OUT_MISSED).page(1, 5, 1, 10)
    assert time.monotonic() - started < 10
    assert "Connection refused" in error.value.message
    assert "HTTPConnectionPool" not in error.value.message


# ---------------------------------------------------------------------- the transport over real HTTP


class _Server(BaseHTTPRequestHandler):
    """Trickles the first `trickles` answers one byte at a time, then answers a page of one call."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        with server.lock:
            server.hits += 1
            trickle = server.hits <= server.trickles
        if trickle:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(500):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.01)
            except OSError:
                pass  # the client gave up, as it should
            return
        body = json.dumps({"code": 200, "count": 1, "cdr": [CALL]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    httpd.daemon_threads = True
    httpd.lock = threading.Lock()
    httpd.hits = 0
    httpd.trickles = 0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_a_body_that_trickles_past_the_timeout_is_a_timeout(server):
    server.trickles = 1
    url = f"http://127.0.0.1:{server.server_port}{OUT_MISSED}"
    transport = Transport(Pacer(1, LOGGER), url, 0.3)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        transport.post(url, json={})
    assert time.monotonic() - started < 3


def test_a_trickling_answer_is_retried_like_any_timeout(server, monkeypatch):
    monkeypatch.setenv("SOURCE_TELECMI_REQUEST_TIMEOUT", "0.3")
    server.trickles = 1
    telecmi = api(url=f"http://127.0.0.1:{server.server_port}")
    assert telecmi.calls("s", OUT_MISSED).page(1, 5, 1, 10).records == [CALL]
    assert server.hits == 2


def test_proxy_settings_come_from_the_environment_once(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/company-ca.pem")
    session = Transport(Pacer(1, LOGGER), API, 1.0)
    assert session.proxies["https"] == "http://proxy.internal:3128"
    assert session.verify == "/etc/company-ca.pem"
    assert not session.trust_env
    assert "https" not in Transport(Pacer(1, LOGGER), "http://127.0.0.1:9", 1.0).proxies


@pytest.mark.parametrize(
    "body, usable",
    [
        ({"count": 2, "cdr": [CALL, CALL]}, True),
        ({"count": "0"}, True),
        ({"count": 0, "cdr": None}, True),
        ({"count": 3}, False),
        ({"cdr": [CALL]}, False),
        ({"count": 1, "cdr": [1]}, False),
    ],
)
def test_a_page_of_calls_is_usable_with_a_count_and_a_list_or_empty_without_one(body, usable):
    assert listing("cdr", "count")(body) is usable


def test_a_users_page_needs_no_count():
    assert listing("agents", "count")({"agents": [{"agent_id": "101_1"}]})
    assert not listing("agents", "count")({"agents": "none"})
