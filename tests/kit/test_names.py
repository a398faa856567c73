"""Session names and server-made ids, as properties (Hypothesis)."""

from __future__ import annotations

import re
import string
import time
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from openwa.kit.ids import SESSION_ID_RE, new_id, ulid
from openwa.kit.names import is_session_id, is_session_ref, name_problem
from tests.api.checks import assert_error, assert_ok
from tests.fixtures.app import Api

# The contract's rule, written out independently of the code under test.
CONTRACT_NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
ALNUM = set(string.ascii_letters + string.digits)
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def contract_accepts(name: str) -> bool:
    return (
        1 <= len(name) <= 64
        and name[0] in ALNUM
        and all(ch in ALNUM or ch in "_-" for ch in name)
        and not name.lower().startswith("ses_")
    )


def decode_time(value: str) -> int:
    number = 0
    for ch in value[:10]:
        number = number * 32 + CROCKFORD.index(ch)
    return number


contract_names = st.from_regex(CONTRACT_NAME_RE, fullmatch=True)
reserved_prefixes = st.sampled_from(["ses_", "SES_", "Ses_", "sES_", "seS_", "SeS_"])
reserved_names = st.builds(
    lambda prefix, rest: prefix + rest,
    reserved_prefixes,
    st.from_regex(r"[A-Za-z0-9_-]{0,60}", fullmatch=True),
)
near_names = st.builds(
    lambda name, noise, at: name[:at] + noise + name[at:],
    contract_names,
    st.sampled_from(
        [" ", ".", "/", "\n", "\x00", "\u00e9", "\u0660", "\uff21", "ß", "@", "+", "~", ":", "ses_"]
    ),
    st.integers(min_value=0, max_value=64),
)
any_names = st.one_of(st.text(max_size=80), contract_names, reserved_names, near_names)


# --- name_problem ----------------------------------------------------------------------------


@given(contract_names)
def test_every_contract_name_that_is_not_reserved_is_accepted(name: str) -> None:
    assume(not name.lower().startswith("ses_"))
    assert name_problem(name) is None
    assert is_session_ref(name)
    assert not is_session_id(name)


@given(reserved_names)
def test_the_ses_prefix_is_reserved_in_any_case(name: str) -> None:
    assert name_problem(name) is not None
    assert is_session_ref(name) == is_session_id(name)


@given(any_names)
@example("")
@example("a")
@example("A" * 64)
@example("A" * 65)
@example("abc\n")
@example("\nabc")
@example("-abc")
@example("_abc")
@example("a-b_c")
@example("ses")
@example("ses-1")
@example("sesx")
@example("ses_")
@example("SES_x")
@example("\u0661\u0662")  # Arabic-Indic digits: \d would take them, the contract does not
@example("\uff21bc")  # fullwidth A
@example("abc\x00")
def test_name_problem_is_exactly_the_contract(name: str) -> None:
    assert (name_problem(name) is None) == contract_accepts(name), repr(name)
    if name_problem(name) is not None:
        assert isinstance(name_problem(name), str)
        assert name_problem(name)


@given(any_names)
def test_a_ref_is_an_id_or_a_valid_name(name: str) -> None:
    assert is_session_ref(name) == (is_session_id(name) or contract_accepts(name))


# --- ids -------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**48 - 1))
def test_ulid_format_and_time(ms: int) -> None:
    value = ulid(ms)
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", value), value
    assert decode_time(value) == ms


@given(
    st.integers(min_value=0, max_value=2**48 - 2),
    st.integers(min_value=1, max_value=2**48 - 1),
)
def test_ulids_sort_by_time(ms: int, gap: int) -> None:
    later = min(ms + gap, 2**48 - 1)
    assume(later > ms)
    assert ulid(ms) < ulid(later)


def test_ulid_now_is_now() -> None:
    before = int(time.time() * 1000)
    value = ulid()
    after = int(time.time() * 1000)
    assert before <= decode_time(value) <= after


def test_ids_are_unique() -> None:
    values = {ulid() for _ in range(20_000)}
    assert len(values) == 20_000
    ids = {new_id("ses") for _ in range(5_000)}
    assert len(ids) == 5_000


def test_ids_made_over_time_sort_in_order() -> None:
    made = []
    for _ in range(20):
        made.append(new_id("ses"))
        time.sleep(0.002)
    assert made == sorted(made)


@given(st.sampled_from(["ses", "key", "msg", "whk"]))
def test_new_id_format(prefix: str) -> None:
    value = new_id(prefix)
    assert re.fullmatch(rf"{prefix}_[0-9A-HJKMNP-TV-Z]{{26}}", value), value


@given(st.builds(lambda _: new_id("ses"), st.integers()))
def test_session_ids_are_refs_but_never_names(session_id: str) -> None:
    assert SESSION_ID_RE.fullmatch(session_id)
    assert is_session_id(session_id)
    assert is_session_ref(session_id)
    assert name_problem(session_id) is not None
    assert name_problem(session_id.lower()) is not None
    assert not is_session_id(session_id.lower())


@given(st.integers(min_value=0, max_value=2**48 - 1))
def test_any_id_shape_is_refused_as_a_name(ms: int) -> None:
    for prefix in ("ses_", "SES_", "Ses_"):
        assert name_problem(prefix + ulid(ms)) is not None


# --- the same rule over HTTP ------------------------------------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=any_names)
@example(name="ses_abc")
@example(name="a" * 64)
@example(name="a" * 65)
@example(name="ok\n")
@example(name="x\x00")
async def test_http_create_accepts_exactly_the_valid_names(api: Api, name: str) -> None:
    body: dict[str, Any] = {"name": name, "autoStart": False}
    response = await api.request("POST", "/api/sessions", json=body)
    if name_problem(name) is None:
        created = assert_ok(response, 201)
        assert created["name"] == name
        assert created["id"] != name
        # The name works in a path, then the session goes away again.
        fetched = assert_ok(await api.request("GET", f"/api/sessions/{quote(name, safe='')}"))
        assert fetched["id"] == created["id"]
        assert_ok(await api.request("DELETE", f"/api/sessions/{created['id']}"))
    else:
        error = assert_error(response, 400, "VALIDATION_ERROR")
        assert any("name" in str(item.get("field", "")) for item in error["details"]), error
