"""Asking TeleCMI: the API object, its error handler and backoff, and a page of a list, over mocked HTTP."""

import ast
import json
import logging
import threading
import time
from pathlib import Path

import pytest
import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.streams.http.error_handlers import ResponseAction
from airbyte_cdk.test.mock_http import HttpRequest, HttpResponse
from airbyte_cdk.utils.airbyte_secrets_utils import filter_secrets
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from conftest import Answer, FakeClock

from source_telecmi.secrets import mask
from source_telecmi.telecmi import client as telecmi_module
from source_telecmi.telecmi import handler as handler_module
from source_telecmi.telecmi import session as session_module
from source_telecmi.telecmi.answers import ENDPOINT_MISSING, REFUSED, AccessRefused, EndpointMissing
from source_telecmi.telecmi.client import (
    CHECK_MAX_RETRIES,
    MAX_RETRIES,
    Page,
    TelecmiApi,
    listing,
)
from source_telecmi.telecmi.credentials import Credentials
from source_telecmi.telecmi.handler import FIRST_BACKOFF_S, FIRST_REFUSAL_BACKOFF_S, LONGEST_BACKOFF_S, Backoff
from source_telecmi.telecmi.pacing import Pacer
from source_telecmi.telecmi.platforms import ACCOUNT, CALL_LISTS, INDIA, PLATFORMS, USER, USERS_LIST

API = "https://rest.telecmi.com"
INDIA_URL = "https://piopiy.telecmi.com"
OUT_MISSED = "/v2/user/out_missed"
LOGIN = API + "/v2/user/login"
LOGGER = logging.getLogger("airbyte.test_telecmi")
CALL = {"cmiuid": "a", "time": 1764583200123}
SPAN = (1, 5)
ROWS = {row.stream: row for row in CALL_LISTS}
OUT_MISSED_ROW = ROWS["outgoing_missed_calls"]
APP = Credentials(kind="app", app_id=1111112, app_secret="app-s3cret")
FIXED_TOKEN = Credentials(kind="token", token="fixed")
LOGIN_CREDENTIALS = Credentials(kind="login", user_id="101_1111112", password="pw")


def cdr(count, records, code=200):
    return HttpResponse(body=json.dumps({"count": count, "cdr": records, "code": code}))


def page_request(token, page=1, limit=10, path=OUT_MISSED):
    return HttpRequest(url=API + path, body={"token": token, "from": 1, "to": 5, "page": page, "limit": limit})


def login_request(password="pw"):
    return HttpRequest(url=LOGIN, body={"id": "101_1111112", "password": password})


REJECTED = HttpResponse(
    body=json.dumps({"code": 404, "error": True, "msg": "Invalid user token, Failed to authenticate token"})
)
NOT_ENABLED = HttpResponse(body=json.dumps({"code": 403, "msg": "Not enabled"}))


def api(credentials=FIXED_TOKEN, url=API, platform=None, logger=LOGGER, **options):
    platform = platform or (USER if credentials.kind != "app" else ACCOUNT)
    return TelecmiApi(url, PLATFORMS[platform], credentials, 2, logger, **options)


def endpoint(telecmi=None, row=OUT_MISSED_ROW):
    (found,) = (telecmi or api()).endpoints(row)
    return found


def printed(record):
    """What the CDK's log formatter would print of a log record: everything in it, secrets masked."""
    return mask(filter_secrets(str(vars(record))))


# -------------------------------------------------------------------------------------- endpoints


def test_the_endpoints_of_a_row_on_each_platform():
    assert [(e.path, e.largest_page) for e in api().endpoints(OUT_MISSED_ROW)] == [(OUT_MISSED, 10)]
    assert [(e.path, e.largest_page) for e in api(APP).endpoints(OUT_MISSED_ROW)] == [("/v2/out_missed", 20)]
    india = api(APP, INDIA_URL, INDIA)
    assert [(e.url, e.largest_page) for e in india.endpoints(OUT_MISSED_ROW)] == [(INDIA_URL + "/v1/outmissed", 10)]
    assert [(e.path, e.largest_page) for e in api(APP).endpoints(USERS_LIST)] == [
        ("/v3/user/list", 20),
        ("/v2/user/list", 10),
    ]
    assert all(e.row is USERS_LIST for e in api(APP).endpoints(USERS_LIST))


def test_user_credentials_have_no_user_list():
    assert api().endpoints(USERS_LIST) == []
    assert api(LOGIN_CREDENTIALS).endpoints(USERS_LIST) == []


def test_an_api_url_with_a_trailing_slash():
    assert endpoint(api(url=API + "/")).url == API + OUT_MISSED


def test_retries_by_default_and_for_check():
    assert (MAX_RETRIES, CHECK_MAX_RETRIES) == (5, 2)


# ----------------------------------------------------------------------------------- the API over HTTP


def test_credentials_are_filled_in_at_send_time_and_never_logged(http_mocker, log):
    http_mocker.post(page_request("secret-token-1"), cdr(1, [CALL]))
    telecmi = api(Credentials(kind="token", token="secret-token-1"), logger=log.logger)
    page = endpoint(telecmi).page(1, 10, SPAN)
    assert page == Page(count=1, records=[CALL])
    outbound = [r for r in log.records if r.getMessage() == "Making outbound API request"]
    assert outbound, "the CDK logs each request at DEBUG"
    assert all(b'"page": 1' in r.request_body for r in outbound)
    assert not any("secret-token-1" in str(vars(r)) for r in log.records)


def test_app_credentials_travel_as_appid_and_secret(http_mocker):
    body = {"appid": 1111112, "secret": "app-s3cret", "start_date": 1, "end_date": 5, "page": 1, "limit": 20}
    http_mocker.post(HttpRequest(url=API + "/v2/answered", body=body), cdr(1, [CALL]))
    answered = endpoint(api(APP), ROWS["incoming_answered_calls"])
    assert answered.largest_page == 20
    assert answered.page(1, 20, SPAN).records == [CALL]


def test_india_sends_the_app_secret_as_token_and_counts_in_total(http_mocker):
    body = {"appid": 1111112, "token": "app-s3cret", "start_date": 1, "end_date": 5, "page": 1, "limit": 10}
    http_mocker.post(
        HttpRequest(url=INDIA_URL + "/v1/outmissed", body=body),
        HttpResponse(body=json.dumps({"total": 3, "cdr": [CALL]})),
    )
    page = endpoint(api(APP, INDIA_URL, INDIA)).page(1, 10, SPAN)
    assert (page.count, page.records) == (3, [CALL])


def test_india_answers_its_success_code_on_a_page_of_calls(http_mocker):
    body = {"appid": 1111112, "token": "app-s3cret", "start_date": 1, "end_date": 5, "page": 1, "limit": 10}
    http_mocker.post(
        HttpRequest(url=INDIA_URL + "/v1/outmissed", body=body),
        HttpResponse(body=json.dumps({"code": "cmi-2000", "total": 1, "cdr": [CALL]})),
    )
    assert endpoint(api(APP, INDIA_URL, INDIA)).page(1, 10, SPAN).records == [CALL]


def test_india_lists_its_users_with_a_string_success_code(http_mocker):
    agents = [{"agent_id": "101_1111112", "name": "Ann"}]
    http_mocker.post(
        HttpRequest(
            url=INDIA_URL + "/v1/agent/list", body={"appid": 1111112, "secret": "app-s3cret", "page": 1, "limit": 10}
        ),
        HttpResponse(body=json.dumps({"code": "cmi-2000", "status": "success", "count": 1, "agents": agents})),
    )
    (users,) = api(APP, INDIA_URL, INDIA).endpoints(USERS_LIST)
    assert users.largest_page == 10
    page = users.page(1, 10)
    assert (page.count, page.records) == (1, agents)


def test_a_users_page_without_a_count_is_read(http_mocker):
    agents = [{"agent_id": "101_1111112"}]
    http_mocker.post(
        HttpRequest(url=API + "/v3/user/list", body={"appid": 1111112, "secret": "app-s3cret", "page": 2, "limit": 20}),
        HttpResponse(body=json.dumps({"code": 200, "agents": agents})),
    )
    v3, _ = api(APP).endpoints(USERS_LIST)
    assert v3.page(2, 20) == Page(count=None, records=agents)


def test_an_empty_page_may_come_without_its_list(http_mocker):
    http_mocker.post(page_request("fixed"), HttpResponse(body=json.dumps({"code": 200, "count": 0})))
    assert endpoint().page(1, 10, SPAN) == Page(count=0, records=[])


def test_long_numbers_keep_every_digit(http_mocker):
    http_mocker.post(
        page_request("fixed"),
        HttpResponse(body='{"code": 200, "count": 1, "cdr": [{"cmiuid": "a", "to": 919100000000000000000001}]}'),
    )
    assert endpoint().page(1, 10, SPAN).records == [{"cmiuid": "a", "to": 919100000000000000000001}]


def test_a_429_is_waited_out_without_spending_a_retry(http_mocker, monkeypatch):
    clock = FakeClock()  # the pacer's waits, whatever they are, take no time

    def pacer(ceiling, logger, wait_scale):
        return Pacer(ceiling, logger, wait_scale=1.0, clock=clock.now, sleep=clock.sleep)

    monkeypatch.setattr(telecmi_module, "Pacer", pacer)
    for form in ("http", "body"):
        limited = (
            HttpResponse(body=json.dumps({"msg": "slow down"}), status_code=429, headers={"Retry-After": "1"})
            if form == "http"
            else HttpResponse(body=json.dumps({"code": 429, "msg": "Too many requests"}))
        )
        http_mocker.clear_all_matchers()
        http_mocker.post(page_request("fixed"), [limited, limited, cdr(1, [CALL])])
        telecmi = api(max_retries=0)
        assert endpoint(telecmi).page(1, 10, SPAN).records == [CALL]
        assert telecmi.pacer.stats()["rate_limited"] == 2


def test_transient_faults_are_retried(http_mocker):
    http_mocker.post(
        page_request("fixed"),
        [
            HttpResponse(body="<html>maintenance</html>", status_code=200),
            HttpResponse(body="", status_code=502),
            HttpResponse(body=json.dumps({"code": 200, "count": 1, "cdr": [CALL]}), status_code=524),
            HttpResponse(body=json.dumps({"code": 200, "cdr": [CALL]})),  # no count
            cdr(1, [CALL]),
        ],
    )
    assert endpoint().page(1, 10, SPAN).count == 1


def test_a_persistent_fault_ends_with_an_error_naming_the_cause(http_mocker):
    http_mocker.post(page_request("fixed"), HttpResponse(body="<html>maintenance</html>", status_code=200))
    with pytest.raises(AirbyteTracedException) as error:
        endpoint(api(max_retries=1)).page(1, 10, SPAN)
    assert "not JSON" in f"{error.value.message} {error.value.internal_message}"


def test_a_page_that_always_lacks_its_count_ends_naming_the_field(http_mocker):
    http_mocker.post(page_request("fixed"), HttpResponse(body=json.dumps({"code": 200, "cdr": [CALL]})))
    with pytest.raises(AirbyteTracedException) as error:
        endpoint(api(max_retries=1)).page(1, 10, SPAN)
    assert "the field 'count'" in f"{error.value.message} {error.value.internal_message}"


def test_a_malformed_request_fails_at_once(http_mocker):
    request = page_request("fixed")
    http_mocker.post(request, HttpResponse(body=json.dumps({"code": 400, "msg": "Parameter missing"})))
    with pytest.raises(AirbyteTracedException) as error:
        endpoint().page(1, 10, SPAN)
    assert error.value.failure_type == FailureType.system_error
    assert "malformed" in error.value.message and "Parameter missing" in error.value.message
    http_mocker.assert_number_of_calls(request, 1)


# ---------------------------------------------------------------------------------- tokens and logins


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
    calls = endpoint(telecmi)
    assert calls.page(1, 10, SPAN).count == 12
    assert calls.page(2, 10, SPAN).count == 12
    assert telecmi.tokens.logins == 2


def test_sign_in_logs_in_once_and_only_with_a_login(http_mocker, log):
    request = login_request()
    http_mocker.post(request, HttpResponse(body=json.dumps({"code": 200, "token": "issued-token-xyz"})))
    telecmi = api(LOGIN_CREDENTIALS, logger=log.logger)
    telecmi.sign_in()
    telecmi.sign_in()
    http_mocker.assert_number_of_calls(request, 1)
    assert any("Logged in to TeleCMI as user 101_1111112" in m for m in log.messages())
    api().sign_in()  # a fixed token: nothing to ask
    api(APP).sign_in()


def test_a_login_without_a_token_is_retried(http_mocker):
    http_mocker.post(
        login_request(),
        [
            HttpResponse(body=json.dumps({"code": 200, "msg": "ok"})),
            HttpResponse(body=json.dumps({"code": 200, "token": "second"})),
        ],
    )
    telecmi = api(LOGIN_CREDENTIALS)
    telecmi.sign_in()
    assert telecmi.tokens.current() == "second"


def test_a_login_token_is_masked_before_the_debug_log_prints_the_answer(http_mocker, log):
    http_mocker.post(login_request(), HttpResponse(body=json.dumps({"code": 200, "token": "issued-token-xyz"})))
    api(LOGIN_CREDENTIALS, logger=log.logger).sign_in()
    answers = [r for r in log.records if r.getMessage() == "Receiving response"]
    assert answers and "issued-token-xyz" in str(vars(answers[0])), "the CDK logs each answer at DEBUG"
    assert not any("issued-token-xyz" in printed(r) for r in log.records)
    assert not any("issued-token-xyz" in filter_secrets(str(vars(r))) for r in log.records)


def test_the_users_passwords_never_reach_the_logs_at_any_depth(http_mocker, log):
    agents = [
        {"agent_id": "101_1111112", "password": "pw-of-ann-101", "sip": {"sip_pass": "sip-of-ann-101"}},
        {"agent_id": "102_1", "password": "pw-2-bob", "devices": [{"pin": "pin-of-bob-2"}]},
    ]
    http_mocker.post(
        HttpRequest(url=API + "/v3/user/list", body={"appid": 1111112, "secret": "app-s3cret", "page": 1, "limit": 20}),
        HttpResponse(body=json.dumps({"code": 200, "status": "success", "count": 2, "agents": agents})),
    )
    (v3, _) = api(APP, logger=log.logger).endpoints(USERS_LIST)
    assert v3.page(1, 20).count == 2
    assert log.records, "DEBUG on"
    secrets = ("pw-of-ann-101", "pw-2-bob", "sip-of-ann-101", "pin-of-bob-2")
    assert not any(secret in printed(r) for r in log.records for secret in secrets)


def test_a_wrong_password_is_tried_once_and_named_as_the_users(http_mocker):
    login = login_request("wrong-pw")
    http_mocker.post(
        login,
        HttpResponse(
            body=json.dumps({"code": 404, "error": True, "msg": "Invalid user id or password, authentication failed"})
        ),
    )
    telecmi = api(Credentials(kind="login", user_id="101_1111112", password="wrong-pw"))
    for row in (OUT_MISSED_ROW, ROWS["incoming_answered_calls"]):
        with pytest.raises(AirbyteTracedException) as error:
            endpoint(telecmi, row).page(1, 10, SPAN)
        assert error.value.failure_type == FailureType.config_error
        assert "101_1111112" in error.value.message and "Invalid user id or password" in error.value.message
        assert "wrong-pw" not in error.value.message
    http_mocker.assert_number_of_calls(login, 1)


@pytest.mark.parametrize("code", [401, 403])
def test_a_login_refused_is_a_wrong_login_not_a_refusal(http_mocker, code):
    login = login_request()
    http_mocker.post(login, HttpResponse(body=json.dumps({"code": code, "error": True, "msg": "Unauthorized"})))
    with pytest.raises(AirbyteTracedException) as error:
        api(LOGIN_CREDENTIALS).sign_in()
    assert not isinstance(error.value, AccessRefused)
    assert error.value.failure_type == FailureType.config_error
    assert "refused the login of user 101_1111112" in error.value.message
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
        endpoint(api(LOGIN_CREDENTIALS)).page(1, 10, SPAN)
    assert error.value.failure_type == FailureType.config_error
    assert "first use" in error.value.message


def test_a_rejected_fixed_token_ends_as_a_config_error(http_mocker):
    for rejected in (REJECTED, HttpResponse(body=REJECTED.body, status_code=404)):
        http_mocker.clear_all_matchers()
        http_mocker.post(page_request("fixed"), rejected)
        with pytest.raises(AirbyteTracedException) as error:
            endpoint().page(1, 10, SPAN)
        assert error.value.failure_type == FailureType.config_error
        assert "invalid or expired" in error.value.message


def test_wrong_app_credentials_name_the_fields_never_their_values(http_mocker):
    body = {"appid": 1111112, "secret": "wrong-secret", "start_date": 1, "end_date": 5, "page": 1, "limit": 20}
    request = HttpRequest(url=API + "/v2/answered", body=body)
    http_mocker.post(
        request,
        HttpResponse(body=json.dumps({"code": 404, "error": True, "msg": "Authentication Failed"})),
    )
    telecmi = api(Credentials(kind="app", app_id=1111112, app_secret="wrong-secret"))
    with pytest.raises(AirbyteTracedException) as error:
        endpoint(telecmi, ROWS["incoming_answered_calls"]).page(1, 20, SPAN)
    assert error.value.failure_type == FailureType.config_error
    message = error.value.message
    assert "credentials.app_id, credentials.app_secret" in message and "Authentication Failed" in message
    assert "wrong-secret" not in message and "1111112" not in message  # the app id is a secret too
    http_mocker.assert_number_of_calls(request, 1)


# -------------------------------------------------------------------------------------------- refusals


def test_a_refusal_that_lasts_through_every_retry_is_access_refused(http_mocker):
    request = page_request("fixed")
    http_mocker.post(request, NOT_ENABLED)
    with pytest.raises(AccessRefused, match="Not enabled"):
        endpoint(api(max_retries=2)).page(1, 10, SPAN)
    http_mocker.assert_number_of_calls(request, 3)  # retried like any fault


def test_a_refusal_that_clears_is_served(http_mocker):
    http_mocker.post(page_request("fixed"), [NOT_ENABLED, NOT_ENABLED, cdr(1, [CALL])])
    assert endpoint(api(max_retries=2)).page(1, 10, SPAN).records == [CALL]


def test_a_refusal_after_the_endpoint_served_is_access_refused_too(http_mocker):
    # The endpoint cannot tell; the partitions make it a fault rather than a skip (test_partitions).
    http_mocker.post(page_request("fixed", page=1), cdr(12, [CALL]))
    second = page_request("fixed", page=2)
    http_mocker.post(second, NOT_ENABLED)
    calls = endpoint(api(max_retries=1))
    calls.page(1, 10, SPAN)
    with pytest.raises(AccessRefused, match="Not enabled"):
        calls.page(2, 10, SPAN)
    http_mocker.assert_number_of_calls(second, 2)  # retried once


def test_a_refusal_then_another_fault_is_no_refusal(http_mocker):
    http_mocker.post(page_request("fixed"), [NOT_ENABLED, HttpResponse(body="<html>down</html>", status_code=200)])
    with pytest.raises(AirbyteTracedException) as error:
        endpoint(api(max_retries=1)).page(1, 10, SPAN)
    assert not isinstance(error.value, AccessRefused)


def test_a_refusal_through_every_retry_carries_the_reason_of_the_last_answer(http_mocker):
    request = page_request("fixed")
    later = HttpResponse(body=json.dumps({"code": 401, "msg": "Plan expired"}))
    http_mocker.post(request, [NOT_ENABLED, NOT_ENABLED, later])
    calls = endpoint(api(max_retries=2))
    with pytest.raises(AccessRefused) as error:
        calls.page(1, 10, SPAN)
    assert str(error.value) == "Plan expired"
    assert error.value.__cause__ is None and error.value.__suppress_context__
    # No thread-local carries it: the reason is read from the CDK's last backoff exception.
    handler = calls._handler
    assert not [value for value in vars(handler).values() if isinstance(value, threading.local)]


def test_a_refusal_in_one_thread_is_no_refusal_in_another(http_mocker):
    refused, served = page_request("fixed", page=1), page_request("fixed", page=2)
    http_mocker.post(refused, NOT_ENABLED)
    http_mocker.post(served, HttpResponse(body="<html>down</html>", status_code=200))
    calls = endpoint(api(max_retries=1))
    outcomes = {}

    def read(number):
        try:
            calls.page(number, 10, SPAN)
        except Exception as error:  # noqa: BLE001 - the outcome is what the test looks at
            outcomes[number] = error

    threads = [threading.Thread(target=read, args=(number,)) for number in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert isinstance(outcomes[1], AccessRefused) and str(outcomes[1]) == "Not enabled"
    assert isinstance(outcomes[2], AirbyteTracedException) and not isinstance(outcomes[2], AccessRefused)


def test_the_refusal_row_is_found_again_in_the_last_answer():
    calls = endpoint()
    refusal = answer({"code": 403, "msg": "Not enabled"})
    row, resolution = calls._handler.resolve(refusal)
    assert row is REFUSED
    assert resolution.error_message == "TeleCMI refused outgoing_missed_calls (Not enabled)"


def test_a_proxy_refusing_is_a_config_error(http_mocker):
    http_mocker.post(page_request("fixed"), HttpResponse(body=json.dumps({"message": "Forbidden"}), status_code=403))
    with pytest.raises(AirbyteTracedException) as error:
        endpoint().page(1, 10, SPAN)
    assert error.value.failure_type == FailureType.config_error
    assert "before TeleCMI answered" in error.value.message and API in error.value.message


# ---------------------------------------------------------------------------------------- missing paths


@pytest.mark.parametrize(
    "missing",
    [
        HttpResponse(body="<html>Cannot POST</html>", status_code=404),
        HttpResponse(body=json.dumps({"message": "Not found"}), status_code=404),  # JSON, but not TeleCMI's
    ],
)
def test_a_path_that_is_not_there_is_a_config_error_naming_api_url(http_mocker, missing):
    request = page_request("fixed")
    http_mocker.post(request, missing)
    with pytest.raises(EndpointMissing) as error:
        endpoint().page(1, 10, SPAN)
    assert error.value.failure_type == FailureType.config_error
    assert OUT_MISSED in error.value.message and API in error.value.message
    http_mocker.assert_number_of_calls(request, 1)


def test_a_missing_path_is_ignored_by_the_cdk_and_raised_after_the_call(http_mocker, log):
    request = page_request("fixed")
    http_mocker.post(request, HttpResponse(body="<html>Cannot POST</html>", status_code=404))
    calls = endpoint(api(logger=log.logger))
    missing = requests.Response()
    missing.status_code = 404
    missing._content = b"<html>Cannot POST</html>"
    missing.request = requests.Request("POST", API + OUT_MISSED).prepare()
    resolution = calls._handler.interpret_response(missing)
    assert resolution.response_action is ResponseAction.IGNORE
    assert resolution.failure_type == FailureType.config_error
    assert calls._handler.resolve(missing)[0] is ENDPOINT_MISSING
    with pytest.raises(EndpointMissing) as error:
        calls.page(1, 10, SPAN)
    # The CDK's client returned the answer (it logs an ignored one), and the caller raised.
    ignored = [r for r in log.records if "TeleCMI has no endpoint" in r.getMessage() and r.name == log.logger.name]
    assert ignored and ignored[0].levelno == logging.INFO
    assert (
        error.value.message
        == f"TeleCMI has no endpoint {OUT_MISSED} at api_url {API} (HTTP 404): check api_url and region"
    )
    assert error.value.internal_message == error.value.message
    http_mocker.assert_number_of_calls(request, 1)


def test_a_redirect_is_a_config_error_naming_where_it_goes(http_mocker):
    http_mocker.post(
        page_request("fixed"),
        HttpResponse(body="", status_code=301, headers={"Location": "https://new.telecmi.com/v2/user/out_missed"}),
    )
    with pytest.raises(AirbyteTracedException) as error:
        endpoint().page(1, 10, SPAN)
    assert error.value.failure_type == FailureType.config_error
    assert "redirects" in error.value.message and "https://new.telecmi.com" in error.value.message


# --------------------------------------------------------------------------------- proving credentials


def test_app_credentials_are_proved_with_the_call_totals(http_mocker):
    body = {"appid": 1111112, "secret": "app-s3cret", "start_date": 10, "end_date": 20}
    request = HttpRequest(url=API + "/v2/analysis", body=body)
    http_mocker.post(request, HttpResponse(body=json.dumps({"code": 200, "total": 4})))
    api(APP).prove_app_credentials(10, 20)
    http_mocker.assert_number_of_calls(request, 1)


def test_app_credentials_are_proved_in_india_with_v1_analysis(http_mocker):
    body = {"appid": 1111112, "token": "app-s3cret", "start_date": 10, "end_date": 20}
    request = HttpRequest(url=INDIA_URL + "/v1/analysis", body=body)
    http_mocker.post(request, HttpResponse(body=json.dumps({"code": "cmi-2000", "data": {}})))
    api(APP, INDIA_URL, INDIA).prove_app_credentials(10, 20)
    http_mocker.assert_number_of_calls(request, 1)


# ------------------------------------------------------------------------------------ the end of a sync


def test_after_the_sync_ends_no_request_goes_out(http_mocker):
    request = page_request("fixed")
    http_mocker.post(request, cdr(1, [CALL]))
    telecmi = api()
    calls = endpoint(telecmi)
    calls.page(1, 10, SPAN)
    telecmi.end("the sync is over")
    with pytest.raises(AirbyteTracedException) as error:
        calls.page(1, 10, SPAN)
    assert "the sync is over" in f"{error.value.message} {error.value.internal_message}"
    http_mocker.assert_number_of_calls(request, 1)


def test_an_unreachable_api_fails_fast_naming_the_cause():
    started = time.monotonic()
    telecmi = api(url="http://127.0.0.1:9")
    with pytest.raises(AirbyteTracedException) as error:
        endpoint(telecmi).page(1, 10, SPAN)
    assert time.monotonic() - started < 10
    assert "Connection refused" in error.value.message
    assert "HTTPConnectionPool" not in error.value.message


def test_connection_failures_with_no_answer_ever_are_given_up_for_the_whole_sync(monkeypatch, log):
    monkeypatch.setattr(session_module, "UNREACHABLE_AFTER_S", 0.0)
    telecmi = api(url="http://127.0.0.1:9", logger=log.logger)
    with pytest.raises(AirbyteTracedException) as error:
        endpoint(telecmi).page(1, 10, SPAN)
    assert error.value.failure_type == FailureType.transient_error
    assert "Cannot reach TeleCMI at http://127.0.0.1:9: Connection refused" in error.value.message
    assert telecmi.reachability.unreachable == error.value.message
    attempts = [r for r in log.records if r.getMessage() == "Making outbound API request"]
    assert len(attempts) == 1, "given up at once, no retry"
    with pytest.raises(requests.ConnectionError, match="Cannot reach TeleCMI"):  # every later request at once
        telecmi.transport.post("http://127.0.0.1:9/x")


def test_connection_failures_after_an_answer_are_never_given_up(http_mocker):
    http_mocker.post(page_request("fixed"), cdr(1, [CALL]))
    telecmi = api()
    endpoint(telecmi).page(1, 10, SPAN)
    assert telecmi.reachability.answered and not telecmi.reachability.give_up_connecting("Cannot reach TeleCMI")


def test_a_trickling_answer_is_retried_like_any_timeout(server, monkeypatch):
    monkeypatch.setenv("SOURCE_TELECMI_REQUEST_TIMEOUT", "0.3")
    server.answers = [Answer(trickle_s=5), Answer({"code": 200, "count": 1, "cdr": [CALL]})]
    assert endpoint(api(url=server.url)).page(1, 10, SPAN).records == [CALL]
    assert len(server.requests) == 2


# ---------------------------------------------------------------------------------------------- backoff


def answer(body, status=200):
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    return response


def test_backoff_doubles_up_to_the_longest(monkeypatch):
    monkeypatch.setenv("SOURCE_TELECMI_BACKOFF_SCALE", "1")
    fault = answer({"code": 500})
    waits = [Backoff().backoff_time(fault, attempt) for attempt in range(1, 9)]
    assert waits == [FIRST_BACKOFF_S * 2**n for n in range(5)] + [LONGEST_BACKOFF_S] * 3
    assert Backoff().backoff_time(requests.ReadTimeout("slow"), 1) == FIRST_BACKOFF_S
    assert Backoff().backoff_time(None, 0) == FIRST_BACKOFF_S


def test_a_refusal_is_retried_sooner_and_a_renewed_token_at_once(monkeypatch):
    monkeypatch.setenv("SOURCE_TELECMI_BACKOFF_SCALE", "1")
    refused = answer({"code": 403, "msg": "Not enabled"})
    assert [Backoff().backoff_time(refused, n) for n in (1, 2, 3)] == [FIRST_REFUSAL_BACKOFF_S * 2**n for n in range(3)]
    assert Backoff().backoff_time(answer({"code": 404, "msg": "Invalid user token"}), 3) == 0.001


def test_backoff_follows_the_scale():
    assert Backoff().backoff_time(answer({"code": 500}), 1) == pytest.approx(FIRST_BACKOFF_S * 0.001)


# ---------------------------------------------------------------------------------------------- listing


@pytest.mark.parametrize(
    "body, lacks",
    [
        ({"count": 2, "cdr": [CALL, CALL]}, None),
        ({"count": "0"}, None),
        ({"count": 0, "cdr": None}, None),
        ({"count": 3}, "the list 'cdr'"),
        ({"cdr": [CALL]}, "the field 'count' (how many records the range holds)"),
        ({"count": "many", "cdr": [CALL]}, "the field 'count' (how many records the range holds)"),
        ({"count": 1, "cdr": [1]}, "a list of records under 'cdr'"),
        ({"count": 1, "cdr": {"a": CALL}}, "a list of records under 'cdr'"),
    ],
)
def test_a_page_of_calls_needs_a_count_and_a_list_or_nothing_when_empty(body, lacks):
    assert listing("cdr", "count")(body) == lacks


@pytest.mark.parametrize(
    "body, lacks",
    [
        ({"agents": [{"agent_id": "101_1"}]}, None),
        ({}, None),  # no count, no list: nothing more to read
        ({"count": 2, "agents": []}, None),
        ({"count": 2}, "the list 'agents'"),
        ({"agents": "none"}, "a list of records under 'agents'"),
    ],
)
def test_a_users_page_needs_no_count(body, lacks):
    assert listing("agents", "count", count_required=False)(body) == lacks


def test_india_counts_in_total():
    assert listing("cdr", "total")({"total": 1, "cdr": [CALL]}) is None
    assert (
        listing("cdr", "total")({"count": 1, "cdr": [CALL]}) == "the field 'total' (how many records the range holds)"
    )


# ------------------------------------------------------------------------------------------ the port


def test_the_handler_never_imports_the_client():
    tree = ast.parse(Path(handler_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "source_telecmi.telecmi.client" not in imported
    assert not any(name and name.endswith(".client") for name in imported)
    assert "TYPE_CHECKING" not in Path(handler_module.__file__).read_text()


def test_the_handler_sees_the_sync_through_its_session():
    telecmi = api(LOGIN_CREDENTIALS)
    session = telecmi.session
    assert (session.api_url, session.credentials, session.tokens) == (API, LOGIN_CREDENTIALS, telecmi.tokens)
    assert session.success_codes == PLATFORMS[USER].success_codes
    assert session.reachability is telecmi.reachability
    assert session.token_sent == telecmi.transport.token_sent
    assert endpoint(telecmi)._handler._session is session


def test_giving_up_waits_unreachable_after_s_scaled():
    clock = iter([100.0, 100.5, 159.9, 160.0])
    reachability = session_module.Reachability(lambda: 1.0, clock=lambda: next(clock))
    assert session_module.UNREACHABLE_AFTER_S == 60.0
    assert not reachability.give_up_connecting("first")
    assert not reachability.give_up_connecting("second")
    assert not reachability.give_up_connecting("third")
    assert reachability.unreachable is None
    assert reachability.give_up_connecting("fourth")
    assert reachability.unreachable == "fourth"
