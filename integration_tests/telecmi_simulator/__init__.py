"""A self-contained HTTP simulator of the TeleCMI user REST API (standard library only).

from integration_tests.telecmi_simulator import Simulator, generate_calls

calls = {"/v2/user/out_missed": generate_calls(500, start_ms, end_ms, seed=1)}
with Simulator(calls=calls, tokens=["t"]) as sim:
    ...  # POST sim.base_url + "/v2/user/out_missed"
"""

from .data import (
    ANSWERED,
    CDR_ENDPOINTS,
    DROP,
    MISSED,
    OUT_ANSWERED,
    OUT_MISSED,
    generate_calls,
    make_call,
    normalize_endpoint,
)
from .server import FAULTS, LOGIN_PATH, Simulator, Stats

DEFAULT_TOKEN = "demo-token"
DEFAULT_USER_ID = "101_1111112"
DEFAULT_PASSWORD = "demo-password"

__all__ = [
    "ANSWERED",
    "CDR_ENDPOINTS",
    "DEFAULT_PASSWORD",
    "DEFAULT_TOKEN",
    "DEFAULT_USER_ID",
    "DROP",
    "FAULTS",
    "LOGIN_PATH",
    "MISSED",
    "OUT_ANSWERED",
    "OUT_MISSED",
    "Simulator",
    "Stats",
    "generate_calls",
    "make_call",
    "normalize_endpoint",
]
