"""Airbyte's standard connector tests (airbyte-cdk `SourceTestSuiteBase`), run in-process.

The scenarios come from `acceptance-test-config.yml`: its configs in `integration_tests/standard/`
point `api_url` at a fixed loopback address, where the harness's simulator serves every platform
(user-level, account-wide and India calls, users) while the suite runs. The valid configs hold the
harness's credentials; the invalid ones hold credentials the simulator does not know.

    .venv/bin/python -m pytest integration_tests/test_standard.py
"""

from __future__ import annotations

import fcntl
import json
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from integration_tests.harness import ALL_ENDPOINTS, END_MS, START_MS, calls_for, config, simulator
from integration_tests.telecmi_simulator import GLOBAL_VOICEMAIL, INDIA_VOICEMAIL, generate_voicemails

# The CDK marks its image tests `image_tests` without registering the mark; only that warning is
# silenced, only while the CDK's suite classes are defined.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Unknown pytest\.mark\.image_tests ")
    from airbyte_cdk.test.standard_tests import SourceTestSuiteBase
    from airbyte_cdk.test.standard_tests.pytest_hooks import pytest_generate_tests as _cdk_generate_tests

ROOT = Path(__file__).resolve().parent.parent
STANDARD = ROOT / "integration_tests" / "standard"
API_URL = "http://127.0.0.1:28431"  # below 32768: outside Linux's ephemeral ports


def STANDARD_DATA() -> dict:
    """Calls of every platform and voicemails: every stream discover lists has records to read."""
    return {
        **calls_for(ALL_ENDPOINTS, 300, seed=20251201),
        GLOBAL_VOICEMAIL: generate_voicemails(60, START_MS, END_MS - 1, seed=20251201),
        INDIA_VOICEMAIL: generate_voicemails(60, START_MS, END_MS - 1, seed=20251202, india=True),
    }


# Each valid config is the harness's config of its kind (the name after "config_"), at API_URL.
VALID = {path: path.stem.removeprefix("config_") for path in STANDARD.glob("config_*.json")}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `scenario` from acceptance-test-config.yml, unless the CDK's plugin is loaded."""
    if not metafunc.config.pluginmanager.has_plugin("airbyte_cdk.test.standard_tests.pytest_hooks"):
        _cdk_generate_tests(metafunc)


@pytest.mark.parametrize("path", sorted(VALID), ids=lambda p: p.name)
def test_valid_configs_are_the_harness_configs(path: Path) -> None:
    assert json.loads(path.read_text()) == config(API_URL, VALID[path])


@pytest.fixture(scope="module", autouse=True)
def telecmi_simulator():
    """Serve the API at API_URL; concurrent runs of this suite on one machine take turns."""
    url = urlsplit(API_URL)
    with open(Path(tempfile.gettempdir()) / f"source-telecmi-standard-{url.port}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with simulator(STANDARD_DATA(), host=url.hostname, port=url.port) as sim:
                yield sim
        except OSError as error:
            raise RuntimeError(f"{API_URL}, the configs' api_url, is taken by another program: {error}") from error


def _image_test(self) -> None:
    """The image is built and proven by scripts/image_test.sh instead."""


_image_test = pytest.mark.image_tests(
    pytest.mark.skip(
        reason="The image is built and proven by scripts/image_test.sh (docker or buildah, host network): "
        "the CDK's image tests need a Docker engine and run on a bridge network, out of the simulator's reach."
    )(_image_test)
)


class TestSourceTelecmiStandard(SourceTestSuiteBase):
    """The CDK's standard source tests for `SourceTelecmi`, against the TeleCMI simulator."""

    # Set, not derived from the checkout folder, which CI may name anything.
    connector_name = "source-telecmi"

    @classmethod
    def get_connector_root_dir(cls) -> Path:
        return ROOT

    test_docker_image_build_and_spec = _image_test
    test_docker_image_spec_backward_compatibility = _image_test
    test_docker_image_build_and_check = _image_test
    test_docker_image_build_and_config_matches_spec = _image_test
    test_docker_image_build_and_discover = _image_test
    test_docker_image_build_and_read = _image_test
