"""Secrets: which fields hold one, every form a secret takes in output, and masking as the last step."""

import json
import re
import threading
from urllib.parse import quote, quote_plus

import pytest
from airbyte_cdk.models.airbyte_protocol import Change
from airbyte_cdk.utils.airbyte_secrets_utils import filter_secrets

from source_telecmi import secret_values
from source_telecmi.secret_values import _any_of, replace_secrets
from source_telecmi.secrets import (
    MASK,
    PARTIAL_MS,
    RECORD_SHORTEST,
    forms_of,
    mask,
    one_line,
    register_named,
    register_secret,
    secret_named,
    without_secrets,
)

PASSWORD = ' pa"ss\\wörd 1 '
LONG = "Zq7-long-secret-value-0123"  # 26 characters


# ------------------------------------------------------------------------------------ secret names


@pytest.mark.parametrize(
    "field",
    [
        "password",
        "Password",
        "PASSWORD",
        "Password2",
        "passwd",
        "pass",
        "sip_pass",
        "pwd",
        "user_pwd",
        "secret",
        "app_secret",
        "clientSecret",
        "token",
        "api_token",
        "accessToken",
        "accesstoken",
        "sippassword",
        "pin",
        "voicemailPin",
        "voicemail_pin",
        "PIN",
        "userPIN",
        "passcode",
        "passCode",
        "passphrase",
        "apikey",
        "apiKey",
        "otp",
        "otp_code",
        "tokens_used",
    ],
)
def test_fields_named_like_a_secret(field):
    assert secret_named(field)


@pytest.mark.parametrize(
    "field",
    [
        "agent_id",
        "name",
        "passport",
        "compass",
        "bypass_queue",
        "pincode",
        "spinner",
        "opinion",
        "shipping",
        "company",
        "passenger",
        "extension",
        "phone",
        "notify",
        "key",
        "api",
        "",
        "time",
    ],
)
def test_fields_that_only_contain_the_letters_of_a_secret_word_are_not_secrets(field):
    assert not secret_named(field)


@pytest.mark.parametrize("field", ["api_key", "API-KEY", "x-api-key"])
def test_an_api_key_is_a_secret_however_its_words_are_joined(field):
    assert secret_named("apiKey")
    assert secret_named(field)


def test_a_field_name_that_is_not_a_string():
    assert not secret_named(3)
    assert not secret_named(None)


# ------------------------------------------------------------------------------------------- forms


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


def test_forms_of_a_secret_hold_every_form_it_can_take():
    forms = forms_of(PASSWORD)
    # A form quoted twice holds the form quoted once, which masks it: every form holds one of forms_of.
    assert all(any(known in form for known in forms) for form in _forms(PASSWORD).values())
    assert {PASSWORD, PASSWORD.strip(), quote(PASSWORD, safe=""), json.dumps(PASSWORD)[1:-1]} <= forms
    assert forms_of("ab") == set()
    assert forms_of(1111112) == {"1111112"}


@pytest.mark.parametrize("form", sorted(_forms(PASSWORD)))
def test_a_registered_secret_is_masked_in_every_form(form):
    register_secret(PASSWORD)
    text = _forms(PASSWORD)[form]
    for masked in (filter_secrets(f"request body: {{{text}}} end"), mask(f"request body: {{{text}}} end")):
        assert MASK in masked
        assert text not in masked
        assert "wörd" not in masked and "w\\u00f6rd" not in masked and "w%C3%B6rd" not in masked


def test_a_secret_in_a_logged_json_body_is_masked():
    register_secret(PASSWORD)
    logged = json.dumps({"message": json.dumps({"id": "101_1", "password": PASSWORD})})
    assert "pa" not in filter_secrets(logged).replace("password", "")
    assert "pa" not in mask(logged).replace("password", "")


def test_nothing_to_register_is_fine():
    register_secret(None)
    register_secret(True)
    register_secret("ab")  # too short to mask: masking every "ab" would garble every message
    assert filter_secrets("ab abc True") == "ab abc True"
    assert mask("ab abc True") == "ab abc True"


def test_a_number_is_registered_as_its_digits():
    register_secret(1111112)
    assert mask("app 1111112") == "app ****"


def test_registering_from_many_threads_at_once():
    secrets = [f"thread-secret-{n:03d}" for n in range(40)]
    threads = [threading.Thread(target=register_secret, args=(s,)) for s in secrets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert mask(" ".join(secrets)) == " ".join([MASK] * 40)


# ------------------------------------------------------------------------------------------ mask


def test_mask_masks_a_whole_secret_wherever_it_is():
    register_secret(LONG)
    assert mask(f"a {LONG} b {LONG}") == f"a {MASK} b {MASK}"


def test_mask_masks_a_secret_cut_at_its_end():
    register_secret(LONG)
    # An echo cut to a length keeps the secret's start: 8 characters or more are masked.
    for cut in range(PARTIAL_MS, len(LONG)):
        masked = mask(f"Invalid token: {LONG[:cut]}")
        assert masked == f"Invalid token: {MASK}", cut


def test_mask_masks_a_secret_cut_at_its_start():
    register_secret(LONG)
    for cut in range(1, len(LONG) - PARTIAL_MS + 1):
        masked = mask(f"...{LONG[cut:]} was refused")
        assert masked == f"...{MASK} was refused", cut


def test_mask_masks_the_start_and_the_end_even_joined_to_other_text():
    register_secret(LONG)
    assert mask(f"x{LONG[:10]}y {LONG[-9:]}!") == f"x{MASK}y {MASK}!"


def test_mask_leaves_pieces_shorter_than_the_partial_length():
    register_secret(LONG)
    assert mask(f"a {LONG[: PARTIAL_MS - 1]} b") == f"a {LONG[: PARTIAL_MS - 1]} b"
    assert mask(f"a {LONG[-(PARTIAL_MS - 1) :]} b") == f"a {LONG[-(PARTIAL_MS - 1) :]} b"


def test_mask_leaves_a_piece_from_the_middle_of_a_secret():
    register_secret(LONG)
    middle = LONG[5:-5]  # neither starts nor ends it
    assert len(middle) >= PARTIAL_MS
    assert mask(f"a {middle} b") == f"a {middle} b"


def test_mask_masks_a_piece_of_a_json_escaped_secret():
    secret = 'quote"and\\slash-and-more'
    register_secret(secret)
    escaped = json.dumps(secret)[1:-1]
    assert secret[:PARTIAL_MS] not in mask(f"echo: {escaped[:14]}")
    assert mask(f"echo: {escaped[:14]}").startswith("echo: ")


def test_mask_of_repeated_and_overlapping_pieces():
    register_secret(LONG)
    text = f"{LONG[:9]}{LONG[:9]} and {LONG[:12]}{LONG[-12:]}"
    masked = mask(text)
    assert LONG[:PARTIAL_MS] not in masked and LONG[-PARTIAL_MS:] not in masked
    assert masked.endswith(MASK) and " and " in masked


def test_a_short_secret_is_masked_only_whole():
    register_secret("12345678")  # exactly PARTIAL_MS long: only its whole is a piece of 8+
    assert mask("pin 12345678 and 1234567") == "pin **** and 1234567"


def test_the_longest_form_is_masked_first_when_registered_first():
    register_secret("secret-abc-and-longer")
    register_secret("secret-abc")
    assert mask("x secret-abc-and-longer y secret-abc") == "x **** y ****"


@pytest.mark.parametrize(
    "short, long_, text",
    [
        ("secret-abc", "secret-abc-xyz", "x secret-abc-xyz y"),
        # Two users' passwords in one users page (logged at DEBUG): '1234' leaves '****56789'.
        ("1234", "123456789", '{"password": "1234"}, {"password": "123456789"}'),
    ],
)
def test_a_secret_holding_a_shorter_one_registered_before_it_is_masked_whole(short, long_, text):
    register_secret(short)
    register_secret(long_)
    masked = mask(text)
    assert long_[-3:] not in masked
    assert masked.count(MASK) == text.count(short)


# ---------------------------------------------------------------------------------------- one_line


def test_one_line_masks_before_collapsing_whitespace():
    spaced = "two  spaces\tand\ntabs-secret"
    register_secret(spaced)
    flat = one_line(f"refused:  {spaced}  end")
    assert flat == f"refused: {MASK} end"
    # Collapsed first, the secret would no longer be found whole; its pieces are no longer its own.
    assert "two spaces" not in flat and "tabs-secret" not in flat


def test_one_line_masks_before_cutting():
    register_secret(LONG)
    text = "x" * 290 + LONG
    flat = one_line(text, 300)
    assert flat == "x" * 290 + MASK
    cut = one_line("y" * 400 + LONG, 300)
    assert len(cut) == 300 and cut.endswith("...") and LONG[:PARTIAL_MS] not in cut


def test_one_line_of_anything():
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line(ValueError("bad\nthing")) == "bad thing"
    assert one_line("x" * 400, 50) == "x" * 47 + "..."
    assert one_line("x" * 50, 50) == "x" * 50


# --------------------------------------------------------------------------------- without_secrets


def test_without_secrets_removes_anything_named_like_a_secret_at_any_depth():
    agent = {
        "agent_id": "101_1111112",
        "name": "User 1",
        "password": "pw-of-user-1",
        "extension": 101,
        "sip": {"domain": "sip.example", "sip_pass": "sip-pass-of-user-1", "creds": [{"pin": "98765432"}]},
        "devices": [{"id": 1, "apiToken": "device-token-1"}, {"id": 2}],
        "Password2": "x",
        "app_secret": "y",
        "token": "z",
        "passwd": "w",
        "voicemailPin": 4321,
    }
    assert without_secrets(agent) == {
        "agent_id": "101_1111112",
        "name": "User 1",
        "extension": 101,
        "sip": {"domain": "sip.example", "creds": [{}]},
        "devices": [{"id": 1}, {"id": 2}],
    }
    assert agent["password"] == "pw-of-user-1", "the record given is not changed"


def test_without_secrets_registers_what_it_drops_at_any_depth():
    record = {
        "password": "pw-of-ann-101",
        "sip": {"sip_pass": "sip-of-ann-101", "creds": [{"pin": "pin-of-ann-101"}]},
        "secrets": {"a": "nested-under-secret-1", "b": ["nested-list-secret-2"]},
        "token": None,
        "pin": "",
    }
    without_secrets(record)
    text = "pw-of-ann-101 sip-of-ann-101 pin-of-ann-101 nested-under-secret-1 nested-list-secret-2"
    assert mask(text) == " ".join([MASK] * 5)


def test_without_secrets_without_registering():
    without_secrets({"password": "not-registered-pw"}, register=False)
    assert mask("not-registered-pw") == "not-registered-pw"


def test_without_secrets_of_values_that_are_no_objects():
    assert without_secrets([{"token": "t-1-2-3"}, 3, "x"]) == [{}, 3, "x"]
    assert without_secrets("text") == "text"
    assert without_secrets(None) is None


def test_register_named_registers_without_dropping():
    body = {
        "code": 200,
        "token": "issued-token-xyz",
        "agents": [{"agent_id": "101_1", "password": "pw-of-agent-1", "sip": {"pwd": "pwd-of-agent-1"}}],
    }
    register_named(body)
    assert body["token"] == "issued-token-xyz"
    assert mask("issued-token-xyz pw-of-agent-1 pwd-of-agent-1 101_1") == f"{MASK} {MASK} {MASK} 101_1"


def test_register_named_of_values_that_are_no_objects():
    register_named([[{"secret": "deep-in-lists-1"}], 3, None])
    register_named("text")
    assert mask("deep-in-lists-1") == MASK


def test_without_secrets_lists_each_field_it_drops_with_its_path():
    agent = {
        "agent_id": "101_1111112",
        "password": "pw-of-user-1",
        "sip": {"domain": "sip.example", "password": "sip-pw-1", "creds": [{"pin": "98765432"}, {"pin": None}]},
        "devices": [{"id": 1, "apiToken": "device-token-1"}, "a phone", {"id": 2, "pin": ""}],
        "settings": {"voicemail_pin": 12345678, "secrets": {"a": "b"}},
        "token": None,
    }
    changes: list = []
    kept = without_secrets(agent, changes=changes)
    assert kept == {
        "agent_id": "101_1111112",
        "sip": {"domain": "sip.example", "creds": [{}, {}]},
        "devices": [{"id": 1}, "a phone", {"id": 2}],
        "settings": {},
    }
    assert changes == [
        ("password", Change.NULLED),
        ("sip.password", Change.NULLED),
        ("sip.creds[0].pin", Change.NULLED),
        ("devices[0].apiToken", Change.NULLED),
        ("devices[2].pin", Change.NULLED),
        ("settings.voicemail_pin", Change.NULLED),
        ("settings.secrets", Change.NULLED),
    ], "a field that held null lost nothing: not listed"
    assert without_secrets({"password": "x"}) == {}, "without a list, nothing is listed"


# ------------------------------------------------------------------------------ secrets in records

APP_SECRET = 's3cr t/+&"\\é-integration-9f'  # every character class an encoding changes
APP_ID = "1111112"


def encodings(secret):
    """Every form of `secret` a record value may hold it in."""
    percent = quote(secret, safe="")
    forms = {
        "plain": secret,
        "quote": percent,
        "quote, lower-case escapes": re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), percent),
        "quote, slashes kept": quote(secret),
        "quote_plus": quote_plus(secret),
        "quote, + for spaces": percent.replace("%20", "+"),
        "json": json.dumps(secret)[1:-1],
        "json, upper-case hex": re.sub(
            r"\\u([0-9a-f]{4})", lambda m: "\\u" + m.group(1).upper(), json.dumps(secret)[1:-1]
        ),
        "json, not ascii": json.dumps(secret, ensure_ascii=False)[1:-1],
        "json twice": json.dumps(json.dumps(secret)[1:-1])[1:-1],
        "json twice, not ascii": json.dumps(json.dumps(secret, ensure_ascii=False)[1:-1], ensure_ascii=False)[1:-1],
        "json of a slash": json.dumps(secret)[1:-1].replace("/", "\\/"),
    }
    return forms


def play_url(secret_form):
    return f"https://rest.telecmi.com/v2/play?appid={APP_ID}&secret={secret_form}&file=1764547200123_0a1b.mp3"


@pytest.mark.parametrize("form", sorted(encodings(APP_SECRET)))
def test_a_secret_inside_a_record_value_is_replaced_in_every_encoding(form):
    register_secret(APP_SECRET)
    register_secret(APP_ID)
    value = play_url(encodings(APP_SECRET)[form])
    record = {"cmiuid": "c-1", "agent": f"101_{APP_ID}", "recording_url": value, "time": 1764547200123}
    changes: list = []
    replace_secrets(record, changes)
    assert record == {
        "cmiuid": "c-1",
        "agent": f"101_{APP_ID}",
        "recording_url": play_url(MASK),
        "time": 1764547200123,
    }
    assert changes == [("recording_url", Change.TRUNCATED)]


def test_secrets_are_replaced_at_any_depth_and_nested_values_are_copied_not_changed():
    register_secret(APP_SECRET)
    token = "tok-9b1e77c0-run-time"  # a token obtained by login, registered when issued
    register_secret(token)
    notes = [{"msg": f"see {play_url(quote_plus(APP_SECRET))}", "agent": "101_1111112"}, {"msg": "fine"}]
    record = {
        "notes": notes,
        "sip": {"url": f"sip:x?token={token}", "domain": "d"},
        "tags": ["a", f"t={token}", 3],
        "plain": "nothing here",
    }
    changes: list = []
    replace_secrets(record, changes)
    assert record["notes"] == [{"msg": f"see {play_url(MASK)}", "agent": "101_1111112"}, {"msg": "fine"}]
    assert record["sip"] == {"url": "sip:x?token=****", "domain": "d"}
    assert record["tags"] == ["a", "t=****", 3] and record["plain"] == "nothing here"
    assert changes == [
        ("notes[0].msg", Change.TRUNCATED),
        ("sip.url", Change.TRUNCATED),
        ("tags[1]", Change.TRUNCATED),
    ]
    assert APP_SECRET.split()[0] in notes[0]["msg"] or quote_plus(APP_SECRET) in notes[0]["msg"], "not in place"
    assert record["notes"][1] is notes[1], "what holds no secret is not copied"


def test_the_app_id_short_secrets_and_digits_stay_in_records():
    register_secret(APP_ID)  # part of every agent id
    register_secret("pw1234")  # shorter than RECORD_SHORTEST: masked in logs only
    register_secret("48213377")  # a numeric PIN: the digits of phone numbers and instants
    record = {
        "agent": f"101_{APP_ID}",
        "from": "919148213377",
        "note": "pw1234 and 48213377",
        "url": f"?appid={APP_ID}",
    }
    before = dict(record)
    changes: list = []
    replace_secrets(record, changes)
    assert record == before and changes == []
    assert len("pw1234") < RECORD_SHORTEST
    assert mask(f"101_{APP_ID} pw1234") == f"101_{MASK} {MASK}", "masked in logs all the same"


def test_a_value_with_a_piece_of_a_secret_but_not_all_of_it_is_kept():
    register_secret(APP_SECRET)
    record = {"a": "integration-9f", "b": quote(APP_SECRET[:-3], safe=""), "c": APP_SECRET.upper()}
    before = dict(record)
    changes: list = []
    replace_secrets(record, changes)
    assert record == before and changes == []


def test_nothing_registered_nothing_looked_for():
    record = {"a": "x", "b": [{"c": "y"}]}
    changes: list = []
    replace_secrets(record, changes)
    assert record == {"a": "x", "b": [{"c": "y"}]} and changes == []


def test_a_secret_registered_after_a_first_record_is_looked_for_in_the_next():
    register_secret("first-secret-value-1")
    record = {"a": "later-token-value-2"}
    replace_secrets(record, [])
    assert record == {"a": "later-token-value-2"}
    register_secret("later-token-value-2")  # a login renewed its token
    replace_secrets(record, changes := [])
    assert record == {"a": MASK} and changes == [("a", Change.TRUNCATED)]


def test_users_passwords_registered_from_a_users_page_are_replaced_among_hundreds():
    users = [{"agent_id": f"{n}_1111112", "password": f"pw-{n}-{n * 7919:08x}"} for n in range(100, 600)]
    register_named({"agents": users})
    record = {"a": f"x {users[321]['password']} y", "b": "pw-321", "c": f"{users[0]['password']}"}
    replace_secrets(record, changes := [])
    assert record == {"a": f"x {MASK} y", "b": "pw-321", "c": MASK}
    assert changes == [("a", Change.TRUNCATED), ("c", Change.TRUNCATED)]


def test_the_longer_of_two_secrets_one_inside_the_other_is_replaced_whole():
    register_secret("secret-abc-1")
    register_secret("secret-abc-1-and-longer")
    record = {"a": "secret-abc-1-and-longer / secret-abc-1"}
    replace_secrets(record, [])
    assert record == {"a": f"{MASK} / {MASK}"}


def test_a_secret_without_a_character_every_encoding_keeps_is_still_found():
    secret = "!@#$ %^&*()"
    register_secret(secret)
    for form in encodings(secret).values():
        record = {"a": f"<{form}>"}
        replace_secrets(record, changes := [])
        assert record == {"a": f"<{MASK}>"} and changes == [("a", Change.TRUNCATED)], form


def test_looking_for_no_secret_in_a_record_is_cheap(monkeypatch):
    """Where there is nothing to find, each string is searched once for a piece of any secret and never scanned
    form by form (the benchmark of the look, `make bench` (c), measures what that costs: a timed test here would
    fail on a busy machine and prove nothing)."""
    register_secret(APP_SECRET)
    register_secret("integration-token-5f2c9a")
    record = {
        "cmiuid": "5b8e3c1a-2f4d-4e0a-9a63-0c1d2e3f4a5b",
        "time": 1764547200123,
        "started_at": "2025-12-01T00:00:00.123Z",
        "name": "unknown",
        "from": "919200000000",
        "to": "919876543210",
        "agent": "101_1111112",
        "filename": "1764547200123_0a1b2c3d.mp3",
        "notes": [{"msg": "Customer asked for a callback tomorrow", "date": 1764547200999, "agent": "101_1111112"}],
    }
    strings = 7 + 2  # the record's strings, and the note's
    scrubber = secret_values._scrubber()
    searched, scanned = [], []
    look, replace = scrubber.hit, scrubber.text
    monkeypatch.setattr(scrubber, "hit", lambda text: searched.append(text) or look(text))
    monkeypatch.setattr(scrubber, "text", lambda text: scanned.append(text) or replace(text))
    replace_secrets(record, [])
    assert len(searched) == strings and scanned == []
    searched.clear()
    replace_secrets({**record, "url": f"https://x/?secret={APP_SECRET}"}, [])
    assert len(searched) == strings + 1 and len(scanned) == 1  # only the string holding one is scanned


def test_the_pieces_looked_for_are_found_wherever_they_are():
    pieces = ["abc", "abd", "ab", "xyz-1", "q", "long-piece-0123456"]
    search = re.compile(_any_of(pieces)).search
    for text in ["", "a", "b", "zab", "xyz-", "xyz-1", "Q", "q", "long-piece-012345", "long-piece-0123456", "a.b-c"]:
        assert (search(text) is not None) == any(p in text for p in pieces), text
    assert re.compile(_any_of(["a.b"])).search("axb") is None
