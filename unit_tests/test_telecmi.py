"""What every TeleCMI answer means, the request gate, backoff, and token handling."""

import json
import logging
import threading
import time
from unittest import TestCase

import pytest
import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.streams.http.error_handlers import ResponseAction
from airbyte_cdk.test.mock_http import HttpMocker, HttpRequest, HttpResponse
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.telecmi import (
    AccessRefused,
    Credentials,
    RequestGate,
    TelecmiApi,
    TelecmiBackoff,
    TelecmiErrorHandler,
    TokenKeeper,
    TokenRejected,
    classify,
    rate_limit_wait,
)

API = "https://rest.telecmi.com"
OUT_MISSED = API + "/v2/user/out_missed"
LOGIN = API + "/v2/user/login"
LOGGER = logging.getLogger("test")


def _response(status=200, body=None, text=None, headers=None, path="/v2/user/out_missed"):
    response = requests.Response()
    response.status_code = status
    response._content = (text if text is not None else json.dumps(body)).encode()
    response.headers.update(headers or {})
    response.request = requests.Request("POST", API + path).prepare()
    return response


CDR_OK = {"count": 1, "cdr": [{"cmiuid": "a", "time": 1}], "code": 200}


@pytest.mark.parametrize(
    "answer, action, failure",
    [
        (_response(body=CDR_OK), ResponseAction.SUCCESS, None),
        (_response(body={"count": 0, "cdr": []}), ResponseAction.SUCCESS, None),
        (requests.ReadTimeout("read timed out"), ResponseAction.RETRY, FailureType.transient_error),
        (requests.ConnectionError("reset by peer"), ResponseAction.RETRY, FailureType.transient_error),
        (requests.exceptions.ChunkedEncodingError("dropped"), ResponseAction.RETRY, FailureType.transient_error),
        (_response(429, {"msg": "slow down"}), ResponseAction.RATE_LIMITED, FailureType.transient_error),
        (_response(200, {"code": 429, "msg": "slow down"}), ResponseAction.RATE_LIMITED, FailureType.transient_error),
        (_response(503, text="<html>busy</html>"), ResponseAction.RETRY, FailureType.transient_error),
        (_response(200, {"code": 500, "msg": "Internal"}), ResponseAction.RETRY, FailureType.transient_error),
        (_response(200, text="<html>Down for maintenance</html>"), ResponseAction.RETRY, FailureType.transient_error),
        (_response(200, text='{"count": 3, "cdr": [{'), ResponseAction.RETRY, FailureType.transient_error),
        (_response(200, {"code": 200, "count": "x", "cdr": None}), ResponseAction.RETRY, FailureType.transient_error),
        (_response(200, text="[1, 2]"), ResponseAction.RETRY, FailureType.transient_error),
        (_response(404, text="<html>Not Found</html>"), ResponseAction.FAIL, FailureType.config_error),
        (_response(404, {"message": "no route"}), ResponseAction.FAIL, FailureType.config_error),
        (_response(200, {"code": 400, "msg": "Parameter missing"}), ResponseAction.FAIL, FailureType.system_error),
        (_response(400, {"code": 400, "msg": "Parameter missing"}), ResponseAction.FAIL, FailureType.system_error),
    ],
)
def test_every_answer_has_one_meaning(answer, action, failure):
    resolution = classify(answer, API, "cdr")
    assert resolution.response_action == action
    assert resolution.failure_type == failure
    if action != ResponseAction.SUCCESS:
        assert resolution.error_message and "\n" not in resolution.error_message


def test_not_found_names_the_api_url():
    resolution = classify(_response(404, text="<html>Not Found</html>"), "https://proxy.example", "cdr")
    assert "api_url https://proxy.example" in resolution.error_message
    assert "not found" in resolution.error_message


def test_bad_request_carries_telecmi_message():
    resolution = classify(_response(200, {"code": 400, "msg": "Parameter limit lesser then equals 10"}), API, "cdr")
    assert "Parameter limit lesser then equals 10" in resolution.error_message


@pytest.mark.parametrize("status", [200, 404])
def test_token_rejection_is_raised_wherever_telecmi_puts_it(status):
    body = {"code": 404, "error": True, "msg": "Invalid user token, Failed to authenticate token"}
    with pytest.raises(TokenRejected, match="Invalid user token"):
        classify(_response(status, body), API, "cdr")


@pytest.mark.parametrize("status", [200, 403])
def test_refusal_of_an_endpoint_is_raised(status):
    with pytest.raises(AccessRefused, match="not authorized"):
        classify(_response(status, {"code": 403, "msg": "not authorized"}), API, "cdr")


def test_login_answer_needs_a_token():
    assert (
        classify(_response(body={"code": 200, "token": "t"}, path="/v2/user/login"), API, "token").response_action
        == ResponseAction.SUCCESS
    )
    assert (
        classify(_response(body={"code": 200, "msg": "ok"}, path="/v2/user/login"), API, "token").response_action
        == ResponseAction.RETRY
    )


def test_gate_bounds_requests_in_flight():
    gate = RequestGate(3)
    in_flight = peak = 0
    lock = threading.Lock()

    def work():
        nonlocal in_flight, peak
        with gate:
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            time.sleep(0.02)
            with lock:
                in_flight -= 1

    threads = [threading.Thread(target=work) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 3


def test_a_429_pauses_every_worker(monkeypatch):
    monkeypatch.setenv("SOURCE_TELECMI_BACKOFF_SCALE", "1")
    gate = RequestGate(4)
    limited = _response(429, {}, headers={"Retry-After": "0.3"})
    resolution = TelecmiErrorHandler(API, "cdr", gate).interpret_response(limited)
    assert resolution.response_action == ResponseAction.RATE_LIMITED
    assert TelecmiBackoff().backoff_time(limited, 1) == pytest.approx(0.3)
    started = time.monotonic()
    with gate:  # another worker, which never saw the 429
        pass
    assert time.monotonic() - started >= 0.25


def test_retry_after_may_be_an_http_date_or_missing(monkeypatch):
    monkeypatch.setenv("SOURCE_TELECMI_BACKOFF_SCALE", "1")
    assert rate_limit_wait(_response(429, {})) == 30
    soon = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 100))
    assert 95 < rate_limit_wait(_response(429, {}, headers={"Retry-After": soon})) <= 100


def test_backoff_is_exponential_and_scalable(monkeypatch):
    monkeypatch.setenv("SOURCE_TELECMI_BACKOFF_SCALE", "1")
    backoff = TelecmiBackoff()
    assert [backoff.backoff_time(_response(503, {}), n) for n in (1, 2, 3)] == [5, 10, 20]
    assert backoff.backoff_time(_response(503, {}), 10) == 120
    monkeypatch.setenv("SOURCE_TELECMI_BACKOFF_SCALE", "0.01")
    assert backoff.backoff_time(_response(503, {}), 1) == pytest.approx(0.05)


def test_many_workers_meeting_an_expired_token_log_in_once():
    logins = []

    def login():
        time.sleep(0.05)
        logins.append(1)
        return f"token-{len(logins)}"

    keeper = TokenKeeper(Credentials(user_id="101_1", password="p"), login)
    stale = keeper.current()
    results = []
    threads = [threading.Thread(target=lambda: results.append(keeper.renew(stale, "expired"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(logins) == 2  # the first login, and one renewal for all eight
    assert set(results) == {"token-2"}


def test_a_rejected_fixed_token_is_a_config_error():
    keeper = TokenKeeper(Credentials(token="fixed"), lambda: "never")
    with pytest.raises(AirbyteTracedException) as error:
        keeper.renew("fixed", "Invalid user token")
    assert error.value.failure_type == FailureType.config_error
    assert "invalid or expired" in error.value.message


def _page_request(token, page=1, request_from=99, request_to=201):
    body = {"token": token, "from": request_from, "to": request_to, "page": page, "limit": 10}
    return HttpRequest(url=OUT_MISSED, body=json.dumps(body))


def _cdr(count, records, code=200):
    return HttpResponse(body=json.dumps({"count": count, "cdr": records, "code": code}))


REJECTED = HttpResponse(
    body=json.dumps({"code": 404, "error": True, "msg": "Invalid user token, Failed to authenticate token"})
)


class EndpointTest(TestCase):
    @HttpMocker()
    def test_asks_ten_at_a_time_with_the_token_in_the_body(self, http_mocker):
        http_mocker.post(_page_request("fixed", page=2), _cdr(12, [{"cmiuid": "b", "time": 150}]))
        api = TelecmiApi(API, Credentials(token="fixed"), 2, LOGGER)
        page = api.endpoint("calls", "/v2/user/out_missed").page(99, 201, 2)
        assert page.count == 12 and page.records == [{"cmiuid": "b", "time": 150}]

    @HttpMocker()
    def test_login_then_log_in_again_when_the_token_expires(self, http_mocker):
        http_mocker.post(
            HttpRequest(url=LOGIN, body=json.dumps({"id": "101_1111112", "password": "pw"})),
            [
                HttpResponse(body=json.dumps({"code": 200, "msg": "ok", "token": "first"})),
                HttpResponse(body=json.dumps({"code": 200, "msg": "ok", "token": "second"})),
            ],
        )
        http_mocker.post(_page_request("first"), REJECTED)
        http_mocker.post(_page_request("second"), _cdr(1, [{"cmiuid": "a", "time": 100}]))
        api = TelecmiApi(API, Credentials(user_id="101_1111112", password="pw"), 2, LOGGER)
        page = api.endpoint("calls", "/v2/user/out_missed").page(99, 201, 1)
        assert page.records == [{"cmiuid": "a", "time": 100}]
        assert api.tokens.logins == 2

    @HttpMocker()
    def test_wrong_password_is_a_config_error_naming_the_user(self, http_mocker):
        http_mocker.post(
            HttpRequest(url=LOGIN, body=json.dumps({"id": "101_1111112", "password": "wrong"})),
            HttpResponse(
                body=json.dumps(
                    {"code": 404, "error": True, "msg": "Invalid user id or password, authentication failed"}
                )
            ),
        )
        api = TelecmiApi(API, Credentials(user_id="101_1111112", password="wrong"), 2, LOGGER)
        with pytest.raises(AirbyteTracedException) as error:
            api.endpoint("calls", "/v2/user/out_missed").page(99, 201, 1)
        assert error.value.failure_type == FailureType.config_error
        assert "101_1111112" in error.value.message and "Invalid user id or password" in error.value.message
        assert "wrong" not in error.value.message

    @HttpMocker()
    def test_rejected_fixed_token_ends_as_config_error(self, http_mocker):
        http_mocker.post(_page_request("fixed"), REJECTED)
        api = TelecmiApi(API, Credentials(token="fixed"), 2, LOGGER)
        with pytest.raises(AirbyteTracedException) as error:
            api.endpoint("calls", "/v2/user/out_missed").page(99, 201, 1)
        assert error.value.failure_type == FailureType.config_error
        assert "invalid or expired" in error.value.message

    @HttpMocker()
    def test_transient_faults_are_retried(self, http_mocker):
        http_mocker.post(
            _page_request("fixed"),
            [
                HttpResponse(body="<html>maintenance</html>", status_code=200),
                HttpResponse(body="", status_code=502),
                _cdr(1, [{"cmiuid": "a", "time": 100}]),
            ],
        )
        api = TelecmiApi(API, Credentials(token="fixed"), 2, LOGGER)
        assert api.endpoint("calls", "/v2/user/out_missed").page(99, 201, 1).count == 1

    @HttpMocker()
    def test_persistent_fault_ends_with_an_error_naming_the_cause(self, http_mocker):
        http_mocker.post(_page_request("fixed"), HttpResponse(body="<html>maintenance</html>", status_code=200))
        api = TelecmiApi(API, Credentials(token="fixed"), 2, LOGGER, max_retries=1)
        with pytest.raises(AirbyteTracedException) as error:
            api.endpoint("calls", "/v2/user/out_missed").page(99, 201, 1)
        assert "not JSON" in str(error.value.message) + str(error.value.internal_message)


def test_proxy_settings_come_from_the_environment_once(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/company-ca.pem")
    from source_telecmi.telecmi import GatedSession

    session = GatedSession(RequestGate(1), 2, "https://rest.telecmi.com")
    assert session.proxies["https"] == "http://proxy.internal:3128"
    assert session.verify == "/etc/company-ca.pem"
    assert not session.trust_env
    assert "https" not in GatedSession(RequestGate(1), 2, "http://127.0.0.1:9").proxies
