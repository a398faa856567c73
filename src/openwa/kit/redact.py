"""Credentials out of what we show and log: one place that knows what a secret looks like.

Used for the access and application logs (an `apiKey` query parameter of `/ws`, a key
pasted anywhere in a line), for URLs we log or store from a receiver (user info,
key-like query parameters), and for proxy URLs in responses.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

# Query parameter names whose values are credentials (compared lower-case, without
# `-` and `_`): `apiKey`, `api_key`, `access_token`, `X-Amz-Signature`, ...
_SECRET_PARAMS = re.compile(
    r".*key|.*token|.*secret|pass(?:word|wd)?|pwd|auth.*|sig(?:nature)?|"
    r"xamzsignature|xamzcredential|xamzsecuritytoken|credential.*|sessionid",
)
_QUERY_PAIR = re.compile(r"(?P<lead>[?&;])(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>[^&;#\s\"'<>]*)")
# A scheme is short: at most 32 characters are scanned back from its `://`, so that a
# long run of scheme characters without one (`a.a.a.a...`) costs a short scan from each
# place, not one to the end of the line (that was quadratic: seconds for a 64 KB line,
# and a WebSocket path reaches the log). A longer "scheme" still has its user info
# masked: the match starts within its last 32 characters.
# The user info runs to the last `@` before the path (an unencoded `@` in a password
# belongs to it, as URL parsers read it).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]{0,31}://)[^/?#\s\"'<>]+@")
_API_KEY = re.compile(r"\bowa_[A-Za-z0-9_\-]{4,}")
# Webhook secrets (Standard Webhooks' form) and bearer tokens, wherever a line holds one.
_WEBHOOK_SECRET = re.compile(r"\bwhsec_[A-Za-z0-9+/=]{4,}")
_BEARER = re.compile(r"(?i)\b(?P<scheme>bearer|basic)\s+[A-Za-z0-9._~+/=\-]{4,}")


def is_secret_param(name: str) -> bool:
    """Whether a query parameter of this name carries a credential."""
    return _SECRET_PARAMS.fullmatch(name.lower().replace("-", "").replace("_", "")) is not None


def redact_text(text: str) -> str:
    """A log line or message with keys, key-like query values and URL user info masked."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _QUERY_PAIR.sub(
        lambda m: f"{m['lead']}{m['name']}={MASK}" if is_secret_param(m["name"]) else m.group(0),
        text,
    )
    text = _WEBHOOK_SECRET.sub(f"whsec_{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m['scheme']} {MASK}", text)
    return _API_KEY.sub(f"owa_{MASK}", text)


def redact_url(url: str, *, every_query: bool = False) -> str:
    """The URL with its user info (name and password) masked, and the values of its
    key-like query parameters (or, with `every_query`, of all of them) masked.

    A user name alone may be a token (`http://TOKEN@proxy:3128`): it is masked too.
    Something that does not parse as a URL is redacted as text.
    """
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        if ":" in host:
            host = f"[{host}]"  # an IPv6 literal keeps its brackets
        userinfo = MASK if parts.password is None else f"{MASK}:{MASK}"
        netloc = f"{userinfo}@{host}" + (f":{port}" if port else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, MASK if every_query or is_secret_param(k) else v) for k, v in pairs],
            safe="*",
        )
    fragment = MASK if parts.fragment and every_query else parts.fragment
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment))


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s'\"<>]+")


def urls_origin_only(text: str) -> str:
    """`text` with every URL in it cut to its origin (`origin_only`): an error a client
    library wrote may quote the receiver's whole URL, its token in the path."""
    return _URL_IN_TEXT.sub(lambda m: origin_only(m.group(0)), text)


def origin_only(url: str) -> str:
    """Scheme, host and port of `url`; user info, path, query and fragment masked whole
    (a bare `?TOKEN` has no name to keep)."""
    try:
        parts = urlsplit(redact_url(url, every_query=True))
    except ValueError:  # a receiver's `Location` need not parse (`http://[::1/x`)
        return MASK
    return urlunsplit(
        parts._replace(
            path=parts.path if parts.path in ("", "/") else f"/{MASK}",
            query=MASK if parts.query else "",
            fragment=MASK if parts.fragment else "",
        )
    )
