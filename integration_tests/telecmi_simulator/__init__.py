"""A self-contained HTTP simulator of the TeleCMI REST API (standard library only).

from integration_tests.telecmi_simulator import Simulator, generate_calls

calls = {"/v2/user/out_missed": generate_calls(500, start_ms, end_ms, seed=1)}
with Simulator(calls=calls, tokens=["t"]) as sim:
    ...  # POST sim.base_url + "/v2/user/out_missed"
"""

from .data import (
    ACCOUNT_ENDPOINTS,
    ANSWERED,
    CDR_ENDPOINTS,
    DEFAULT_APP_ID,
    DEFAULT_APP_SECRET,
    DROP,
    GLOBAL_VOICEMAIL,
    INDIA_ENDPOINTS,
    INDIA_VOICEMAIL,
    MISSED,
    OUT_ANSWERED,
    OUT_MISSED,
    USER_ENDPOINTS,
    VOICEMAIL_PATHS,
    generate_agents,
    generate_calls,
    generate_voicemails,
    make_call,
    make_voicemail,
    normalize_endpoint,
)
from .server import (
    ANALYSIS_PATH,
    BALANCE_PATH,
    DEFAULT_BALANCE,
    FAULTS,
    INDIA_ANALYSIS_PATH,
    INDIA_BALANCE_PATH,
    INDIA_USERS_PATH,
    LOGIN_PATH,
    RATE_LIMIT_FORMS,
    STORE_PATHS,
    USERS_V2_PATH,
    USERS_V3_PATH,
    Simulator,
    Stats,
)

DEFAULT_TOKEN = "demo-token"
DEFAULT_USER_ID = "101_1111112"
DEFAULT_PASSWORD = "demo-password"

__all__ = [
    "ACCOUNT_ENDPOINTS",
    "ANALYSIS_PATH",
    "ANSWERED",
    "BALANCE_PATH",
    "CDR_ENDPOINTS",
    "DEFAULT_APP_ID",
    "DEFAULT_APP_SECRET",
    "DEFAULT_BALANCE",
    "DEFAULT_PASSWORD",
    "DEFAULT_TOKEN",
    "DEFAULT_USER_ID",
    "DROP",
    "FAULTS",
    "GLOBAL_VOICEMAIL",
    "INDIA_ANALYSIS_PATH",
    "INDIA_BALANCE_PATH",
    "INDIA_ENDPOINTS",
    "INDIA_USERS_PATH",
    "INDIA_VOICEMAIL",
    "LOGIN_PATH",
    "MISSED",
    "OUT_ANSWERED",
    "OUT_MISSED",
    "RATE_LIMIT_FORMS",
    "STORE_PATHS",
    "USERS_V2_PATH",
    "USERS_V3_PATH",
    "USER_ENDPOINTS",
    "VOICEMAIL_PATHS",
    "Simulator",
    "Stats",
    "generate_agents",
    "generate_calls",
    "generate_voicemails",
    "make_call",
    "make_voicemail",
    "normalize_endpoint",
]
