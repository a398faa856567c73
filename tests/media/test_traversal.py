"""Path traversal: no name a client gives reaches outside the store, or reads from outside.

Every name a client controls is tried: the multipart file name (and `filename` field),
the JSON `filename`, the message id and the session name in the download route. The
file tree of the test's directory is compared before and after: files may only appear
under STORAGE_PATH, named `{sessionId}/{stem}.{ext}` (a send's by our message id, an
inbound message's by a key made when it came, whatever id its sender gave it); the
download route answers 400 or 404 (never 500) and never hands out a file from outside.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from fastapi import FastAPI

from openwa.kit.ids import whatsapp_message_id
from openwa.storage.keys import inbound_media_key, profile_key, sent_media_key
from tests.fixtures.app import ADMIN_KEY
from tests.media.conftest import MediaApps, MediaStore
from tests.media.support import (
    OUTSIDER,
    STORE_KEY_RE,
    b64,
    data_of,
    download,
    inbound,
    png,
    post_media_json,
    post_raw_multipart,
    ready_session,
    wait_sent,
)

PASSWD = Path("/etc/passwd")


def client_names(tmp_path: Path) -> list[str]:
    """File names a hostile client may send (relative ones aim at the test's directory)."""
    return [
        "../../etc/passwd",
        "../../escaped-1.png",
        "../../../../../../../../tmp/escaped-2.png",
        "/etc/passwd",
        f"{tmp_path}/absolute-escape.png",
        "..%2F..%2Fescaped-3.png",
        "%2e%2e%2f%2e%2e%2fescaped-4.png",
        "a\x00b.png",
        "../../nul\x00.png",
        "....//....//escaped-5.png",
        "..\\..\\escaped-6.png",
        "C:\\Windows\\win.ini",
        "x" * 300 + ".png",
        "../" * 40 + "deep.png",
        "ünïcødé-名前-😀.png",
        "..",
        ".",
        "",
        "line\r\nX-Injected: yes.png",
        'quote".png',
    ]


def snapshot(root: Path) -> dict[str, tuple[int, float]]:
    """Every file under `root` (relative path -> size, mtime)."""
    files: dict[str, tuple[int, float]] = {}
    for path in root.rglob("*"):
        if path.is_file():
            stat = path.stat()
            files[path.relative_to(root).as_posix()] = (stat.st_size, stat.st_mtime)
    return files


def passwd_state() -> tuple[int, float] | None:
    return (PASSWD.stat().st_size, PASSWD.stat().st_mtime) if PASSWD.exists() else None


async def raw_get(app: FastAPI, raw_path: str, key: str | None = ADMIN_KEY) -> tuple[int, bytes]:
    """A GET with the path exactly as given (no client-side normalisation of `..` or `%2F`),
    decoded the way uvicorn decodes it."""
    headers = [(b"host", b"openwa.test")]
    if key:
        headers.append((b"x-api-key", key.encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("ascii"),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("openwa.test", 80),
    }
    status = 0
    body = b""
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    try:
        await app(scope, receive, send)
    except Exception as exc:  # the server answered 500 (and re-raised): report it as such
        return status or 500, body or f"unhandled {type(exc).__name__}: {exc}".encode()
    return status, body


async def test_client_names_never_become_paths(
    media_apps: MediaApps, store: MediaStore, tmp_path: Path
) -> None:
    api = await media_apps.start(store)
    alice = await ready_session(api, "alice")
    await ready_session(api, "bob")
    passwd_before = passwd_state()
    before = snapshot(tmp_path)
    names = client_names(tmp_path)
    accepted: list[tuple[str, str, bytes]] = []  # (session, message id, content)

    for name in names:
        # The multipart file name, byte for byte.
        content = png()
        response = await post_raw_multipart(
            api, "alice", {"chatId": OUTSIDER, "type": "image"}, name.encode(), content
        )
        assert response.status_code in (202, 400), (name, response.text)
        if response.status_code == 202:
            accepted.append(("alice", response.json()["data"]["id"], content))
        # The `filename` form field (at most 255 characters).
        content = png()
        response = await post_raw_multipart(
            api,
            "alice",
            {"chatId": OUTSIDER, "type": "image", "filename": name},
            b"upload.png",
            content,
        )
        assert response.status_code in (202, 400), (name, response.text)
        if response.status_code == 202:
            accepted.append(("alice", response.json()["data"]["id"], content))
        # The JSON filename, in a send and in an inbound message.
        content = png()
        media = {"base64": b64(content), "mimetype": "image/png", "filename": name}
        response = await post_media_json(api, "alice", OUTSIDER, "image", media)
        assert response.status_code in (202, 400), (name, response.text)
        if response.status_code == 202:
            accepted.append(("alice", response.json()["data"]["id"], content))
        content = png()
        media = {"base64": b64(content), "mimetype": "image/png", "filename": name}
        response = await inbound(api, "bob", **{"from": OUTSIDER, "type": "image"}, media=media)
        assert response.status_code in (202, 400), (name, response.text)
        if response.status_code == 202:
            accepted.append(("bob", response.json()["data"]["id"], content))

    # Most names are taken (as labels); only the over-long JSON/field names are refused.
    assert len(accepted) >= 3 * len(names), len(accepted)
    for session, message_id, _ in accepted:
        if session == "alice":
            await wait_sent(api, session, message_id)

    # Each message downloads its own bytes, with a harmless label.
    for session, message_id, content in accepted:
        response = await download(api, session, message_id)
        assert response.status_code == 200, response.text
        assert response.content == content
        disposition = response.headers.get("content-disposition", "")
        assert "\r" not in disposition, disposition
        assert "\n" not in disposition, disposition
        assert "x-injected" not in {k.lower() for k in response.headers}
        message = data_of(
            await api.request("GET", f"/api/sessions/{session}/messages/{message_id}")
        )
        label = message["media"].get("filename")
        if label is not None:
            assert not {"/", "\\", "\x00"} & set(label), label
            assert len(label) <= 255, label

    # Nothing appeared outside the store; the store holds server-made names only.
    after = snapshot(tmp_path)
    store_prefix = store.root.relative_to(tmp_path).as_posix() + "/"
    appeared = sorted(set(after) - set(before))
    outside = [p for p in appeared if not p.startswith(store_prefix)]
    assert outside == [], outside
    assert passwd_state() == passwd_before
    for escaped in ("escaped-1.png", "escaped-3.png", "escaped-4.png", "escaped-5.png"):
        assert not (tmp_path / escaped).exists()
    assert not Path("/tmp/escaped-2.png").exists()
    assert not (tmp_path / "absolute-escape.png").exists()
    keys = store.objects()
    assert len(keys) == len(accepted), sorted(keys)
    bad = [k for k in keys if not STORE_KEY_RE.fullmatch(k)]
    assert bad == [], bad
    if store.kind == "s3":
        assert not store.root.exists() or snapshot(store.root) == {}
    assert {k.split("/")[0] for k in keys} <= {alice["id"], (await api.session("bob"))["id"]}


async def test_download_route_never_leaves_the_store(
    media_apps: MediaApps, store: MediaStore
) -> None:
    api = await media_apps.start(store)
    alice = await ready_session(api, "alice")
    content = png()
    media = {"base64": b64(content), "mimetype": "image/png"}
    real = data_of(await post_media_json(api, "alice", OUTSIDER, "image", media), 202)["id"]
    await wait_sent(api, "alice", real)
    # A file right beside the store and one at its root, as bait.
    store.root.mkdir(parents=True, exist_ok=True)
    (store.root.parent / "bait.png").write_bytes(b"BAIT-OUTSIDE")
    (store.root / "bait.png").write_bytes(b"BAIT-ROOT")

    session_id = alice["id"]
    message_ids = [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..%5C..%5Cetc%5Cpasswd",
        "%2Fetc%2Fpasswd",
        "..%2Fbait",
        "..%2F..%2Fbait.png",
        "bait",
        "%00",
        f"{real}%00",
        f"{real}%00.png",
        f"{real}.png",
        f"{real}%2F..%2F{real}",
        f"..%2F{session_id}%2F{real}",
        "..",
        ".",
        "%2e%2e",
        "%C0%AE%C0%AE%2F%C0%AE%C0%AE%2Fetc%2Fpasswd",
        "%FF%FE",
        "x" * 129,
        quote("ünïcødé", safe=""),
        "%0D%0AX-Injected:%20yes",
    ]
    paths = [f"/api/sessions/alice/messages/{m}/media" for m in message_ids]
    # Dot segments and session names that try to climb.
    paths += [
        "/api/sessions/alice/messages/../../../../etc/passwd/media",
        "/api/sessions/../../etc/passwd/messages/x/media",
        f"/api/sessions/..%2F..%2Fetc/messages/{real}/media",
        f"/api/sessions/alice%00/messages/{real}/media",
        f"/api/sessions/%00/messages/{real}/media",
        f"/api/sessions/{session_id}%2F..%2F{session_id}/messages/{real}/media",
        f"/api/sessions/..%5C..%5Cetc/messages/{real}/media",
    ]
    passwd = PASSWD.read_bytes() if PASSWD.exists() else b"root:x:0:0:"
    problems: list[tuple[str, int, bytes]] = []
    for path in paths:
        status, body = await raw_get(api.app, path)
        if status not in (400, 404) or b'"success":false' not in body.replace(b" ", b""):
            problems.append((path, status, body[:200]))
        # Whatever the answer, never a file from outside the store (nor the real media).
        assert b"root:" not in body, path
        assert passwd[:64] not in body, path
        assert b"BAIT" not in body, path
        assert content not in body, path
    assert problems == [], "\n".join(f"{p} -> {s} {b!r}" for p, s, b in problems)

    # The real one still works, by name and by id.
    for ref in ("alice", session_id):
        status, body = await raw_get(api.app, f"/api/sessions/{ref}/messages/{real}/media")
        assert (status, body) == (200, content)
    # Session names are checked when created.
    for name in ("../../x", "..", "a/b", "a\x00b", "%2e%2e", "a\\b", "x" * 65):
        response = await api.request("POST", "/api/sessions", json={"name": name})
        assert response.status_code == 400, (name, response.text)
    assert os.path.exists(store.root / "bait.png")  # untouched, never served


async def test_dot_names_are_not_kept_as_labels(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    """`..` and `.` name no file: kept as the media's `filename` they would reach receivers
    that save attachments under `filename` as a path component (webhooks carry it)."""
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")
    labels = {}
    for name in ("..", ".", "...", " .. "):
        media = {"base64": b64(png()), "mimetype": "image/png", "filename": name}
        sent = data_of(await post_media_json(api, "alice", OUTSIDER, "image", media), 202)
        labels[name] = sent["media"].get("filename")
    assert labels[".."] is None, labels
    assert labels["."] is None, labels
    assert labels[" .. "] is None, labels
    assert labels["..."] in (None, "..."), labels


def test_each_kind_of_key_has_stems_of_its_own() -> None:
    """A send's media under our id alone; inbound media under a new `in_` key each
    time; neither can be the profile's."""
    sid = "ses_01M93YTECGECM3YAKJ7FJC8NHH"
    ours = whatsapp_message_id()
    assert sent_media_key(sid, ours, "jpg") == f"{sid}/{ours}.jpg"
    for chosen in ("webjs_profile", "in_01M93YTECGECM3YAKJ7FJC8NHH", "3EB0X", ours.lower()):
        with pytest.raises(ValueError, match="not an id we made"):
            sent_media_key(sid, chosen, "zip")
    made = {inbound_media_key(sid, "zip") for _ in range(100)}
    assert len(made) == 100
    assert all(key.startswith(f"{sid}/in_") for key in made)
    assert profile_key(sid) not in made
