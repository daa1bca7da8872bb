"""Airbyte's standard connector tests (airbyte-cdk `SourceTestSuiteBase`), run in-process.

The scenarios come from `acceptance-test-config.yml` at the repo root: its configs live in
`integration_tests/standard/` and point `api_url` at a fixed loopback address. The
`telecmi_simulator` fixture below serves the TeleCMI API on that address while the suite's
tests run, with the credentials those same config files hold, so the files are the one place
that says where the API is and which credentials are good.

    .venv/bin/python -m pytest integration_tests/test_standard.py
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from integration_tests.telecmi_simulator import CDR_ENDPOINTS, Simulator, generate_calls

# The CDK marks its image tests `image_tests` without registering the mark, and pytest.ini does
# not register it either, so each use would add a PytestUnknownMarkWarning to every run. Only
# that warning is silenced, only here: the first import of `airbyte_cdk.test.standard_tests`
# defines the CDK's suite classes, so every CDK import of this module is in this block.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"Unknown pytest\.mark\.image_tests ", category=pytest.PytestUnknownMarkWarning
    )
    from airbyte_cdk.test.standard_tests import ConnectorTestScenario, SourceTestSuiteBase
    from airbyte_cdk.test.standard_tests.pytest_hooks import pytest_generate_tests as _cdk_generate_tests

    IMAGE_TESTS = pytest.mark.image_tests

# The repo root: the folder holding acceptance-test-config.yml and metadata.yaml. CI clones the
# repo into a folder of any name, so neither the root nor the connector's name is taken from it.
CONNECTOR_ROOT = Path(__file__).resolve().parent.parent
CONNECTOR_NAME = "source-telecmi"

# The calls the simulator holds for every stream: December 2025, the configs' start_date..end_date.
START_MS = 1764547200000  # 2025-12-01T00:00:00Z
END_MS = 1767225600000  # 2026-01-01T00:00:00Z
CALLS = 300  # per stream: 30 pages of 10, every page path is read, and the suite stays fast.
# Another run of these tests (another checkout, another engineer) holding the port is waited
# for this long; a run of the suite takes seconds.
PORT_WAIT_SECONDS = 120

_IMAGE_TESTS_SKIP_REASON = (
    "The connector image is built and tested by scripts/image_test.sh (docker or buildah, run "
    "with host networking against the simulator), not by the airbyte-cdk image tests: those need "
    "a Docker engine (these machines have the docker client only), and they run the image on "
    "Docker's bridge network, where the simulator's loopback api_url in integration_tests/standard/ "
    "is out of reach."
)

_CDK_HOOKS_PLUGIN = "airbyte_cdk.test.standard_tests.pytest_hooks"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize this module's `scenario` tests from acceptance-test-config.yml.

    The CDK's hook does it; it is called from this module rather than loaded as a plugin from a
    root conftest, so it touches no other test. If the CDK plugin is loaded anyway (`-p
    airbyte_cdk.test.standard_tests.pytest_hooks`, as `airbyte-cdk connector test` does), the
    plugin parametrizes and this defers to it, so nothing is parametrized twice.
    """
    if not metafunc.config.pluginmanager.has_plugin(_CDK_HOOKS_PLUGIN):
        _cdk_generate_tests(metafunc)


@contextlib.contextmanager
def _port_lock(host: str, port: int) -> Iterator[None]:
    """Take this machine's lock for the simulator's port, waiting for a run that holds it."""
    path = Path(tempfile.gettempdir()) / f"source-telecmi-standard-tests-{host}-{port}.lock"
    with open(path, "a") as handle:
        deadline = time.monotonic() + PORT_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Another run of the standard tests has held {host}:{port} for more than "
                        f"{PORT_WAIT_SECONDS} s (lock file {path})."
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class TestSourceTelecmiStandard(SourceTestSuiteBase):
    """The CDK's standard source tests for `SourceTelecmi`, against the TeleCMI simulator."""

    # Set, not derived from the checkout folder's name: they give the module `source_telecmi`
    # and the class `SourceTelecmi`, which the suite instantiates with no arguments.
    connector_name = CONNECTOR_NAME

    @classmethod
    def get_connector_root_dir(cls) -> Path:
        return CONNECTOR_ROOT

    @pytest.fixture(scope="class", autouse=True)
    def telecmi_simulator(self) -> Iterator[Simulator]:
        """Serve the TeleCMI API at the configs' `api_url` while this class's tests run.

        Every config listed in acceptance-test-config.yml must name the same loopback `api_url`.
        The credentials of every config not declared `status: failed`/`exception` are made
        valid; the others stay unknown to the simulator. The port is fixed because the configs
        are read as committed files; a machine-wide lock makes concurrent runs of these tests
        take turns instead of failing, and anything else holding the port fails the run at once.
        """
        api_url, tokens, users = self._simulator_settings()
        address = urlsplit(api_url)
        host, port = address.hostname or "", address.port or 0
        simulator = Simulator(
            calls={
                endpoint: generate_calls(CALLS, START_MS, END_MS - 1, seed=20251201 + i, endpoint=endpoint)
                for i, endpoint in enumerate(CDR_ENDPOINTS)
            },
            tokens=tokens,
            users=users,
            host=host,
            port=port,
        )
        with _port_lock(host, port):
            try:
                simulator.start()
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                raise RuntimeError(
                    f"{host}:{port}, the api_url of the configs in integration_tests/standard/, is "
                    "used by another program. Stop it, or move the configs' api_url to a free "
                    "port (one below 32768, outside Linux's ephemeral range)."
                ) from error
            try:
                assert simulator.base_url == api_url, (simulator.base_url, api_url)
                yield simulator
            finally:
                simulator.stop()

    @classmethod
    def _simulator_settings(cls) -> tuple[str, list[str], dict[str, str]]:
        """The configs' one `api_url`, and the tokens and logins the simulator accepts."""
        api_urls: set[Any] = set()
        tokens: list[str] = []
        users: dict[str, str] = {}
        for scenario in cls.get_scenarios():
            config = scenario.get_config_dict(connector_root=CONNECTOR_ROOT, empty_if_missing=False)
            api_urls.add(config.get("api_url"))
            if scenario.status in ("failed", "exception"):
                continue
            credentials = config["credentials"]
            if credentials["auth_type"] == "token":
                tokens.append(credentials["token"])
            else:
                users[credentials["user_id"]] = credentials["password"]
        if len(api_urls) != 1:
            raise ValueError(
                "Every config in acceptance-test-config.yml must point api_url at the one "
                f"simulator; found {sorted(map(str, api_urls))}."
            )
        (api_url,) = api_urls
        host = urlsplit(api_url).hostname
        if host not in ("127.0.0.1", "localhost") or not urlsplit(api_url).port:
            raise ValueError(f"api_url {api_url!r} must be a loopback address with a port.")
        return api_url, tokens, users

    def test_config_matches_spec(self, scenario: ConnectorTestScenario) -> None:
        """The CDK's test, given the scenario without its `configured_catalog_path`.

        airbyte-cdk 7.39 passes a scenario's `configured_catalog_path` to `spec` as `--catalog`
        (`run_test_job` adds it for every verb but `check` and `discover`), and `spec` rejects
        the argument, so a config listed under `spec` and under a read with a catalog would fail
        here. `spec` reads no catalog, so dropping it changes nothing else.
        """
        super().test_config_matches_spec(scenario.model_copy(update={"configured_catalog_path": None}))

    # The image tests of the suite. Overridden to skip with the reason, still marked
    # `image_tests` so `-m "not image_tests"` deselects them as before.

    @IMAGE_TESTS
    @pytest.mark.skip(reason=_IMAGE_TESTS_SKIP_REASON)
    def test_docker_image_build_and_spec(self) -> None:
        pass

    @IMAGE_TESTS
    @pytest.mark.skip(
        reason=_IMAGE_TESTS_SKIP_REASON
        + " This one also compares the spec `spec` prints in the image with the published one."
    )
    def test_docker_image_spec_backward_compatibility(self) -> None:
        pass

    @IMAGE_TESTS
    @pytest.mark.skip(reason=_IMAGE_TESTS_SKIP_REASON)
    def test_docker_image_build_and_check(self) -> None:
        pass

    @IMAGE_TESTS
    @pytest.mark.skip(reason=_IMAGE_TESTS_SKIP_REASON)
    def test_docker_image_build_and_config_matches_spec(self) -> None:
        pass

    @IMAGE_TESTS
    @pytest.mark.skip(reason=_IMAGE_TESTS_SKIP_REASON)
    def test_docker_image_build_and_discover(self) -> None:
        pass

    @IMAGE_TESTS
    @pytest.mark.skip(reason=_IMAGE_TESTS_SKIP_REASON)
    def test_docker_image_build_and_read(self) -> None:
        pass
