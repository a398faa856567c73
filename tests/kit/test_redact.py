"""Keys and credentials masked in log lines, logged URLs and shown proxy URLs."""

from __future__ import annotations

import logging

import pytest
import structlog

from openwa.kit.redact import redact_text, redact_url
from openwa.logs import configure_logging

KEY = "owa_k3yMaterial_ABCdef0123456789"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f'127.0.0.1:5555 - "WebSocket /ws?apiKey={KEY}" [accepted]', KEY),
        (f"/ws?events=*&apiKey={KEY}&sessions=a", KEY),
        ("/api/x?api_key=abc123secret", "abc123secret"),
        ("/cb?access_token=t0k3n-value&x=1", "t0k3n-value"),
        ("https://s3/b/o?X-Amz-Signature=deadbeef99", "deadbeef99"),
        ("GET http://user:pa55word@example.com/x", "pa55word"),
        ("GET http://T0KENASUSER@example.com/x", "T0KENASUSER"),
        (f"Authorization failed for {KEY}", KEY),
        ("socks5://u:hunter2@10.0.0.1:1080", "hunter2"),
        ("x" * 40 + "://u:hunter2@h", "hunter2"),  # a "scheme" longer than any real one
        ("http://u:hunt@er2@h/x", "er2"),  # an unencoded @ in the password
        # A failed statement's parameters, as a database error quotes them.
        ("[parameters: ('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', None)]", "LaLaSw"),
        ('{"Authorization":"Bearer sk_live_SUPERSECRET"}', "sk_live_SUPERSECRET"),
    ],
)
def test_secrets_leave_log_lines(line: str, secret: str) -> None:
    redacted = redact_text(line)
    assert secret not in redacted, redacted
    assert "***" in redacted


def test_a_long_line_of_scheme_characters_costs_a_pass_not_a_pass_per_character() -> None:
    """`a.a.a...` is all scheme characters and no `://`: a scan from each of its places
    to the end of the line took seconds for 64 KB (a WebSocket path reaches the log)
    and minutes for this megabyte; now each scan stops within 32 characters."""
    line = "a." * (1 << 19)
    assert redact_text(line) == line


def test_ordinary_lines_are_kept() -> None:
    line = '127.0.0.1:5555 - "GET /api/sessions?limit=10&cursor=abc HTTP/1.1" 200'
    assert redact_text(line) == line


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://alice:s3cr3t@proxy.example:3128", "http://***:***@proxy.example:3128"),
        ("http://T0KEN@proxy.example:3128", "http://***@proxy.example:3128"),
        ("http://dave:pw@[2001:db8::1]:3128", "http://***:***@[2001:db8::1]:3128"),
        (
            "http://proxy.example:3128/?password=pw&user=u",
            "http://proxy.example:3128/?password=***&user=***",
        ),
        ("http://proxy.example:8080", "http://proxy.example:8080"),
    ],
)
def test_proxy_urls_show_no_credential(url: str, shown: str) -> None:
    assert redact_url(url, every_query=True) == shown


def test_logged_urls_keep_ordinary_query_values() -> None:
    assert redact_url("https://h/p?token=abc&page=2") == "https://h/p?token=***&page=2"


def test_both_kinds_of_log_line_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    """Our structlog lines and standard-library lines (uvicorn's) pass the same helper."""
    configure_logging("info", "json")
    structlog.get_logger("test").info("fetch_failed", url=f"https://u:pw@h/x?apiKey={KEY}")
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:1", f"/ws?apiKey={KEY}"
    )
    logging.getLogger("aiohttp.client").warning("retrying %s", f"http://h/?token={KEY}")
    err = capsys.readouterr().err
    for shown in ("fetch_failed", "WebSocket /ws?apiKey=***", "retrying"):
        assert shown in err, err
    for hidden in (KEY, "pw@"):
        assert hidden not in err, err
