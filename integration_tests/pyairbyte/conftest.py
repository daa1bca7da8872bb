"""The PyAirbyte test runs only in its own venv, through scripts/pyairbyte_test.sh.

PyAirbyte (the `airbyte` package) is not installed in the project's .venv, so a plain
`pytest integration_tests` there does not collect this folder at all (no skip is reported: the
test is not meant to run there). The script sets PYAIRBYTE_TEST=1; then a missing `airbyte` is
an error, never a silent skip.

PyAirbyte reads its offline and telemetry switches when it is imported, so they are set here,
before pytest imports the test module.
"""

from __future__ import annotations

import importlib.util
import os

REQUIRED = os.environ.get("PYAIRBYTE_TEST") == "1"
HAVE_AIRBYTE = importlib.util.find_spec("airbyte") is not None

if REQUIRED and not HAVE_AIRBYTE:
    raise RuntimeError(
        "PYAIRBYTE_TEST=1 but the `airbyte` package (PyAirbyte) is not importable by "
        "this Python; run the test with scripts/pyairbyte_test.sh"
    )

collect_ignore_glob = [] if HAVE_AIRBYTE else ["test_*.py"]

if HAVE_AIRBYTE:
    # No registry look-up, no telemetry, no Colab probe, no live progress display.
    os.environ["AIRBYTE_OFFLINE_MODE"] = "1"
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ.pop("COLAB_RELEASE_TAG", None)
    os.environ.setdefault("NO_LIVE_PROGRESS", "1")
