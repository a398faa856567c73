"""Chat ids: every form a client may send, normalised to WhatsApp's canonical address."""

from __future__ import annotations

import re
import tracemalloc

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from openwa.errors import InvalidChatId
from openwa.kit.chat_ids import chat_kind, normalize_chat_id, phone_of

CANONICAL = "6281234567890@s.whatsapp.net"
# What a normalised user address must look like: ASCII digits and the user suffix.
CANONICAL_USER_RE = re.compile(r"^[0-9]{5,20}@s\.whatsapp\.net$")


@pytest.mark.parametrize(
    "raw",
    [
        "+62 812-3456-7890",
        "6281234567890",
        "+6281234567890",
        "  6281234567890  ",
        "(62) 812.3456.7890",
        "6281234567890@s.whatsapp.net",
        "6281234567890@S.WhatsApp.NET",
        "6281234567890@c.us",
        "6281234567890:12@s.whatsapp.net",  # a device suffix is dropped
    ],
)
def test_user_forms_normalise_to_the_canonical_address(raw: str) -> None:
    assert normalize_chat_id(raw) == CANONICAL


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("123456789-123456@g.us", "123456789-123456@g.us"),
        ("120363025246125486@g.us", "120363025246125486@g.us"),
        ("123456789-123456@G.US", "123456789-123456@g.us"),
    ],
)
def test_group_addresses_are_kept(raw: str, expected: str) -> None:
    assert normalize_chat_id(raw) == expected
    assert chat_kind(expected) == "group"
    assert phone_of(expected) is None


@pytest.mark.parametrize(
    "raw",
    [
        "123456789012345@lid",
        "abcDEF_1.2:3@lid",
        "120363025246125486@newsletter",
        "status@broadcast",
    ],
)
def test_engine_addresses_pass_through(raw: str) -> None:
    assert normalize_chat_id(raw) == raw


def test_chat_kinds() -> None:
    assert chat_kind(CANONICAL) == "user"
    assert chat_kind("123456789-123456@g.us") == "group"
    assert chat_kind("status@broadcast") == "status"
    assert chat_kind("120363025246125486@newsletter") == "channel"
    assert phone_of(CANONICAL) == "6281234567890"


INVALID = [
    "",
    " ",
    "garbage",
    "hello world",
    "abc123",
    "+62 812 abc",
    "62812345678a0",
    "12",
    "1234",
    "12345",  # digits, but not a possible number
    "1234567890123456789012",  # too long
    "+" + "9" * 40,
    "@s.whatsapp.net",
    "abc@s.whatsapp.net",
    "62812@c.us",
    "+62 812-3456-7890@s.whatsapp.net",
    "abc-123@g.us",
    "12345abc@g.us",
    "group@g.us",
    "123456789-@g.us",
    "@g.us",
    "foo@bar.com",
    "6281234567890@example.com",
    "6281234567890@",
    "x@lid@lid",
    "status@broadcast.net",
    "x" * 200,
    "6281234567890\x00",
]


@pytest.mark.parametrize("raw", INVALID)
def test_invalid_chat_ids_are_refused(raw: str) -> None:
    with pytest.raises(InvalidChatId) as caught:
        normalize_chat_id(raw)
    assert caught.value.code == "INVALID_CHAT_ID"
    assert caught.value.status == 400


def test_non_ascii_digits_are_not_a_canonical_address() -> None:
    """Arabic-Indic digits are `isdigit()` in Python but are not a WhatsApp address.

    Either they are refused or they come out as the ASCII canonical form; passing them
    through as they came would store and send to an address that WhatsApp does not know.
    """
    arabic_indic = "٦٢٨١٢٣٤٥٦٧٨٩٠"  # 6281234567890
    for raw in (f"{arabic_indic}@s.whatsapp.net", f"{arabic_indic}@c.us"):
        try:
            normalized = normalize_chat_id(raw)
        except InvalidChatId:
            continue
        assert normalized == CANONICAL, (raw, normalized)


# Inputs that are near the accepted forms, so the property explores both sides.
_digits = st.text(alphabet="0123456789", min_size=0, max_size=24)
_separators = st.text(alphabet="0123456789 +-().", min_size=0, max_size=34)
_suffix = st.sampled_from(
    ["", "@s.whatsapp.net", "@c.us", "@g.us", "@lid", "@newsletter", "@broadcast", "@x"]
)
_near = st.builds(lambda a, b: a + b, st.one_of(_digits, _separators, st.text()), _suffix)
_groups = st.builds(lambda a, b: f"{a}-{b}@g.us", _digits, _digits)
_inputs = st.one_of(st.text(), _near, _groups)


def _normalize_or_none(raw: str) -> str | None:
    try:
        return normalize_chat_id(raw)
    except InvalidChatId:
        return None


@settings(max_examples=600, deadline=None)
@given(_inputs)
@example("+62 812-3456-7890")
@example("6281234567890@c.us")
@example("123456789-123456@g.us")
@example("status@broadcast")
@example("\u0663" * 8)
@example("\u00b2" * 8 + "@c.us")
def test_normalize_raises_only_invalid_chat_id_and_is_idempotent(raw: str) -> None:
    # Anything other than InvalidChatId escaping here fails the test (as a 500 would).
    normalized = _normalize_or_none(raw)
    if normalized is None:
        return
    assert normalize_chat_id(normalized) == normalized
    assert normalized == normalized.strip()
    assert 0 < len(normalized) <= 128


@settings(max_examples=300, deadline=None)
@given(st.one_of(_near, st.builds(lambda d: d + "@s.whatsapp.net", st.text(min_size=1))))
@example("\u0666\u0662\u0668\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660@c.us")
def test_accepted_user_addresses_are_ascii_canonical(raw: str) -> None:
    normalized = _normalize_or_none(raw)
    if normalized is not None and normalized.endswith("@s.whatsapp.net"):
        assert CANONICAL_USER_RE.fullmatch(normalized), (raw, normalized)


def test_the_cache_keeps_no_padding() -> None:
    """Only the stripped address is a cache key: a raw one padded to a megabyte was kept
    whole, up to the cache's 4,096 entries (4 GiB for anyone who may send)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20):
            padded = " " * (1 << 20) + f"+62812345678{i:02d}"
            assert normalize_chat_id(padded) == f"62812345678{i:02d}@s.whatsapp.net"
        del padded
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1 << 20, kept
