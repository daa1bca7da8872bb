"""Credentials: what the connector signs in with, and the user token it obtains and renews."""

import threading
import time

import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_telecmi.telecmi.credentials import Credentials, TokenKeeper, config_error

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


def test_credentials_never_show_their_secrets():
    shown = repr(Credentials(kind="app", app_id=1111112, app_secret="app-s3cret"))
    assert "app-s3cret" not in shown and "1111112" in shown
    assert "hunter2" not in repr(Credentials(kind="login", user_id="101_1", password="hunter2"))


def test_credentials_are_frozen():
    with pytest.raises(AttributeError):
        LOGIN_CREDENTIALS.password = "other"  # type: ignore[misc]


def test_config_error_is_a_config_error_with_its_message():
    error = config_error("credentials.token is wrong")
    assert isinstance(error, AirbyteTracedException)
    assert error.failure_type == FailureType.config_error
    assert error.message == error.internal_message == "credentials.token is wrong"


def test_login_happens_lazily_and_once():
    logins = Logins()
    keeper = TokenKeeper(LOGIN_CREDENTIALS, logins)
    assert logins.calls == 0
    assert keeper.current() == "token-1"
    assert keeper.current() == "token-1"
    assert logins.calls == keeper.logins == 1


def test_a_fixed_token_needs_no_login():
    logins = Logins()
    keeper = TokenKeeper(Credentials(kind="token", token="fixed"), logins)
    assert keeper.current() == "fixed"
    assert logins.calls == keeper.logins == 0


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


def test_a_token_already_renewed_by_another_worker_is_not_renewed_again():
    logins = Logins()
    keeper = TokenKeeper(LOGIN_CREDENTIALS, logins)
    keeper.renew(keeper.current(), "Invalid user token")
    keeper.renew("token-1", "Invalid user token")  # a late answer to a request sent with token-1
    assert keeper.current() == "token-2" and logins.calls == 2


def test_fresh_tokens_rejected_twice_in_a_row_are_a_config_error():
    keeper = TokenKeeper(LOGIN_CREDENTIALS, Logins())
    keeper.renew(keeper.current(), "Invalid user token")  # once may be bad luck: log in again
    with pytest.raises(AirbyteTracedException) as error:
        keeper.renew(keeper.current(), "Invalid user token")
    assert error.value.failure_type == FailureType.config_error
    assert "101_1111112" in error.value.message and "first use" in error.value.message
    assert "Invalid user token" in error.value.message


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


def test_a_failed_renewal_is_remembered_too():
    keeper = TokenKeeper(LOGIN_CREDENTIALS, Logins())
    keeper.accepted(keeper.current())
    refused = config_error("TeleCMI refused the login of user 101_1111112")
    keeper._log_in = Logins(fail=refused)
    for _ in range(2):
        with pytest.raises(AirbyteTracedException) as error:
            keeper.renew("token-1", "Invalid user token")
        assert error.value is refused


def test_a_login_that_failed_for_a_transient_reason_is_tried_again():
    transient = AirbyteTracedException(message="TeleCMI is down", failure_type=FailureType.transient_error)
    logins = Logins(fail=transient)
    keeper = TokenKeeper(LOGIN_CREDENTIALS, logins)
    for _ in range(2):
        with pytest.raises(AirbyteTracedException):
            keeper.current()
    assert logins.calls == 2


@pytest.mark.parametrize(
    "credentials",
    [Credentials(kind="token", token="fixed"), Credentials(kind="app", app_id=1, app_secret="s")],
)
def test_a_rejected_fixed_token_is_a_config_error(credentials):
    logins = Logins()
    keeper = TokenKeeper(credentials, logins)
    if credentials.kind == "token":
        assert keeper.current() == "fixed"
        keeper.accepted("fixed")
    with pytest.raises(AirbyteTracedException) as error:
        keeper.renew("fixed", "Invalid user token")
    assert error.value.failure_type == FailureType.config_error
    assert "invalid or expired" in error.value.message and "Invalid user token" in error.value.message
    assert logins.calls == 0
