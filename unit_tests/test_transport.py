"""The one HTTP session of a sync: credentials put in at send time, 429s waited out, answers that end in time."""

import logging
import threading
import time

import pytest
import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from conftest import Answer, FakeClock

from source_telecmi.telecmi.pacing import Pacer
from source_telecmi.telecmi.session import Reachability, SyncEnded, wait_scale
from source_telecmi.telecmi.transport import DEFAULT_REQUEST_TIMEOUT_S, Transport, request_timeout_s

API = "https://rest.telecmi.com"
PATH = "/v2/user/out_missed"
LOGGER = logging.getLogger("airbyte.test_transport")
PAGE = {"code": 200, "count": 1, "cdr": [{"cmiuid": "a", "time": 1764583200123}]}


def transport(url, timeout_s=5.0, pacer=None):
    return Transport(pacer or Pacer(2, LOGGER, wait_scale=0.001), url, timeout_s)


# --------------------------------------------------------------------------------------- settings


def test_wait_scale_and_request_timeout_come_from_the_environment(monkeypatch):
    assert wait_scale() == 0.001  # the unit tests' own (conftest)
    monkeypatch.delenv("SOURCE_TELECMI_BACKOFF_SCALE")
    assert wait_scale() == 1.0
    monkeypatch.setenv("SOURCE_TELECMI_BACKOFF_SCALE", "")
    assert wait_scale() == 1.0
    monkeypatch.delenv("SOURCE_TELECMI_REQUEST_TIMEOUT", raising=False)
    assert request_timeout_s() == DEFAULT_REQUEST_TIMEOUT_S == 60.0
    monkeypatch.setenv("SOURCE_TELECMI_REQUEST_TIMEOUT", "0.3")
    assert request_timeout_s() == 0.3


def test_proxy_settings_come_from_the_environment_once(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/company-ca.pem")
    session = Transport(Pacer(1, LOGGER), API, 1.0)
    assert session.proxies["https"] == "http://proxy.internal:3128"
    assert session.verify == "/etc/company-ca.pem"
    assert not session.trust_env
    assert "https" not in Transport(Pacer(1, LOGGER), "http://127.0.0.1:9", 1.0).proxies


def test_without_a_ca_bundle_certificates_are_verified(monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert Transport(Pacer(1, LOGGER), API, 1.0).verify is True


# ------------------------------------------------------------------------------------------ answers


def test_an_answer_is_read_whole(server):
    server.answers = [Answer(PAGE)]
    answer = transport(server.url).post(server.url + PATH, json={"page": 1})
    assert answer.status_code == 200 and answer.json() == PAGE
    assert server.requests == [(PATH, {"page": 1})]


def test_a_body_that_trickles_past_the_timeout_is_a_timeout(server):
    server.answers = [Answer(trickle_s=5)]
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        transport(server.url, timeout_s=0.3).post(server.url + PATH, json={})
    assert time.monotonic() - started < 3


def test_a_body_cut_off_is_a_cut_answer(server):
    server.answers = [Answer(b'{"code": 200, "count": 1, "cdr": [')]
    server.answers[0].cut = True
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        transport(server.url).post(server.url + PATH, json={})


def test_a_redirect_is_never_followed(server):
    server.answers = [Answer({"msg": "moved"}, status=301, headers={"Location": "https://elsewhere.example/x"})]
    answer = transport(server.url).post(server.url + PATH, json={"token": "t"})
    assert answer.status_code == 301
    assert len(server.requests) == 1


# -------------------------------------------------------------------------------------- credentials


def test_credentials_are_filled_in_at_send_time_on_a_copy(server):
    session = transport(server.url)
    url = server.url + PATH
    tokens = iter(["token-1", "token-2"])
    session.sign(url, lambda: {"token": next(tokens)}, token_field="token")
    request = requests.Request("POST", url, json={"page": 1, "limit": 10}).prepare()
    first = session.send(request)
    second = session.send(request)
    assert [body for _, body in server.requests] == [
        {"page": 1, "limit": 10, "token": "token-1"},
        {"page": 1, "limit": 10, "token": "token-2"},
    ]
    assert b"token" not in request.body, "the request the CDK logs carries no credentials"
    assert (session.token_sent(first), session.token_sent(second)) == ("token-1", "token-2")
    assert not hasattr(first.request, "telecmi_token"), "nothing of the connector's is set on requests' objects"


def test_without_a_token_field_no_token_is_named(server):
    session = transport(server.url)
    url = server.url + PATH
    session.sign(url, lambda: {"appid": 1111112, "token": "app-secret-as-token"})
    answer = session.post(url, json={"page": 1})
    assert server.requests[0][1] == {"page": 1, "appid": 1111112, "token": "app-secret-as-token"}
    assert session.token_sent(answer) is None


def test_a_request_to_another_url_is_not_signed(server):
    session = transport(server.url)
    session.sign(server.url + "/v2/user/login", lambda: {"password": "pw"})
    session.post(server.url + PATH, json={"page": 1})
    assert server.requests == [(PATH, {"page": 1})]


def test_a_signed_request_without_a_body_gets_one(server):
    session = transport(server.url)
    session.sign(server.url + PATH, lambda: {"token": "t"}, "token")
    session.post(server.url + PATH)
    assert server.requests == [(PATH, {"token": "t"})]


# -------------------------------------------------------------------------------------------- 429s


@pytest.mark.parametrize("form", ["http", "body"])
def test_a_429_is_waited_out_and_the_request_sent_again(server, form):
    limited = (
        Answer({"msg": "slow down"}, status=429, headers={"Retry-After": "1"})
        if form == "http"
        else Answer({"code": 429, "msg": "Too many requests"})
    )
    server.answers = [limited, limited, Answer(PAGE)]
    clock = FakeClock()  # the pacer's waits, whatever they are, take no time
    pacer = Pacer(2, LOGGER, clock=clock.now, sleep=clock.sleep)
    answer = transport(server.url, pacer=pacer).post(server.url + PATH, json={})
    assert answer.json() == PAGE
    assert len(server.requests) == 3
    assert pacer.stats()["rate_limited"] == 2
    assert sum(clock.slept) > 0, "the 429s were waited out"


def test_a_rate_limit_that_outlasts_patience_is_a_transient_error(server):
    server.answers = [Answer({"msg": "slow down"}, status=429)]
    pacer = Pacer(1, LOGGER, patience_s=0.0, wait_scale=0.001)
    with pytest.raises(AirbyteTracedException) as error:
        transport(server.url, pacer=pacer).post(server.url + PATH, json={})
    assert error.value.failure_type == FailureType.transient_error
    assert "rate limit" in error.value.message and "num_workers" in error.value.message


# ----------------------------------------------------------------------------------- the end of a sync


def test_after_end_every_request_raises_sync_ended_and_none_goes_out(server):
    session = transport(server.url)
    session.post(server.url + PATH, json={})
    session.end("the sync failed")
    assert session.ended == "the sync failed"
    for _ in range(2):
        with pytest.raises(SyncEnded, match="the sync failed"):
            session.post(server.url + PATH, json={})
    assert len(server.requests) == 1
    assert issubclass(SyncEnded, requests.ConnectionError)


def test_a_request_waiting_for_its_turn_when_the_sync_ends_never_goes_out(server):
    pacer = Pacer(1, LOGGER, wait_scale=0.001)
    session = transport(server.url, pacer=pacer)
    outcome = []
    holding, release = threading.Event(), threading.Event()

    def hold_the_only_slot():
        with pacer.slot():
            holding.set()
            release.wait(10)

    def waiting_request():
        try:
            session.post(server.url + PATH, json={})
            outcome.append("sent")
        except SyncEnded as ended:
            outcome.append(str(ended))

    holder = threading.Thread(target=hold_the_only_slot)
    holder.start()
    assert holding.wait(10)
    waiter = threading.Thread(target=waiting_request)
    waiter.start()
    time.sleep(0.1)
    assert waiter.is_alive(), "the request waits for the slot"
    session.end("the stream failed")
    release.set()
    holder.join(10)
    waiter.join(10)
    assert outcome == ["the stream failed"]
    assert server.requests == []


def test_an_unreachable_api_fails_every_later_request_at_once(server):
    reachability = Reachability(lambda: 0.0)
    session = Transport(Pacer(2, LOGGER, wait_scale=0.001), server.url, 5.0, reachability)
    session.post(server.url + PATH, json={})  # before giving up, requests go out
    assert reachability.give_up_connecting("Cannot reach TeleCMI")
    with pytest.raises(requests.ConnectionError, match="Cannot reach TeleCMI"):
        session.post(server.url + PATH, json={})
    assert len(server.requests) == 1


def test_an_answer_never_given_up_on_after_one_answer():
    reachability = Reachability(lambda: 0.0)
    reachability.reached()
    assert not reachability.give_up_connecting("Cannot reach TeleCMI")
    assert reachability.unreachable is None


def test_a_token_is_named_for_the_answer_it_got_not_for_a_request_unsent(server):
    session = transport(server.url)
    session.sign(server.url + PATH, lambda: {"token": "token-1"}, token_field="token")
    unsent = requests.Response()
    assert session.token_sent(unsent) is None
    assert session.token_sent(session.post(server.url + PATH, json={})) == "token-1"
