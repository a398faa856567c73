"""Encryption at rest (ENCRYPTION_KEY): what the database holds, start-up refusals, rotation.

The stored values are read raw (the SQLite file's bytes, and plain SQL on both
databases), never through OpenWA's models; signatures are checked with
`standardwebhooks`, as a receiver would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from openwa.app import build_storage
from openwa.config import Settings
from openwa.db.encryption import EncryptionKeyError
from openwa.db.models import EngineAuthRow, WebhookRow
from openwa.db.sealing import SEALED, Sealer
from openwa.engines.bridge.profiles import ProfileStore
from openwa.kit.cipher import Cipher, CipherError, generate_key
from tests.fixtures.app import Api, AppFactory, make_settings
from tests.fixtures.server import ServerProcess
from tests.webhooks.conftest import FAST_WEBHOOKS
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import inbound, new_secret, ready_session, register, verifies

KEY_A, KEY_B = generate_key(), generate_key()
HEADER = "Bearer receiver-token-4f1c9e0d7a"
PROXY_PASSWORD = "proxy-pass-8b2e61c0"
PROXY = f"http://proxyuser:{PROXY_PASSWORD}@127.0.0.1:3128"
# Fast webhooks, loopback proxies allowed.
SETTINGS: dict[str, Any] = {**FAST_WEBHOOKS, "proxy_allow_private": True}


async def _raw(database_url: str) -> dict[str, list[str]]:
    """Every stored value of the encrypted columns, as text, read with plain SQL."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    values: dict[str, list[str]] = {}
    try:
        async with engine.connect() as conn:
            for field in SEALED:
                cast = "::text" if engine.dialect.name == "postgresql" else ""
                rows = await conn.execute(text(f"SELECT {field.column}{cast} FROM {field.table}"))
                values[f"{field.table}.{field.column}"] = [r[0] for r in rows if r[0] is not None]
    finally:
        await engine.dispose()
    return values


def _file_bytes(database_url: str) -> bytes:
    if not database_url.startswith("sqlite"):
        return b""
    path = Path(database_url.split("///", 1)[1])
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


async def _secrets_setup(api: Api, receiver: Receiver) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ready session with a proxy, and a webhook with a secret and a header."""
    session = await ready_session(api, config={"proxy": PROXY})
    hook = await register(
        api,
        session["id"],
        receiver.url,
        events=["message.received"],
        secret=new_secret(),
        headers={"Authorization": HEADER},
    )
    return session, hook


async def _delivered(api: Api, receiver: Receiver, session_id: str, secret: str) -> None:
    """A new event reaches the receiver signed with `secret` and with the stored header."""
    message_id = await inbound(api, session_id, "hello")

    def arrived(requests: list[Any]) -> bool:
        return any(r.payload["data"].get("id") == message_id for r in requests)

    requests = await receiver.wait_for(arrived, what=f"delivery of {message_id}")
    request = next(r for r in requests if r.payload["data"].get("id") == message_id)
    assert verifies(secret, request)
    assert request.headers["authorization"] == HEADER


def _assert_sealed(raw: dict[str, list[str]], file_bytes: bytes, secrets: list[str]) -> None:
    for column in ("webhooks.secret", "webhooks.headers", "engine_auth.data"):
        assert raw[column], column
        assert all("enc:v1:" in value for value in raw[column]), (column, raw[column])
    assert all(PROXY_PASSWORD not in v and "enc:v1:" in v for v in raw["sessions.config"])
    for secret in secrets:
        assert not any(secret in value for values in raw.values() for value in values)
        assert secret.encode() not in file_bytes


async def test_secrets_are_stored_encrypted_and_still_used(
    app_factory: AppFactory, receiver: Receiver, database_url: str
) -> None:
    # Written in clear by an app without a key, then encrypted by the first start with one.
    async with app_factory.running(**SETTINGS) as api:
        old_session, old_hook = await _secrets_setup(api, receiver)
    raw = await _raw(database_url)
    assert any(old_hook["secret"] in v for v in raw["webhooks.secret"])  # clear so far

    async with app_factory.running(**SETTINGS, encryption_key=KEY_A) as api:
        session, hook = await _secrets_setup(api, receiver)
        await _delivered(api, receiver, old_session["id"], old_hook["secret"])
        await _delivered(api, receiver, session["id"], hook["secret"])
        # The API shows clear values (the proxy masked, as always).
        shown = await api.request("GET", f"/api/sessions/{session['id']}/webhooks/{hook['id']}")
        assert shown.json()["data"]["headers"] == {"Authorization": HEADER}
        assert (await api.session(session["id"]))["config"]["proxy"].startswith("http://***")
        # The engine is handed the clear proxy.
        assert api.services.directory.get(session["id"]).config["proxy"] == PROXY  # type: ignore[union-attr]

    raw = await _raw(database_url)
    secrets = [old_hook["secret"], hook["secret"], HEADER, PROXY_PASSWORD]
    _assert_sealed(raw, _file_bytes(database_url), secrets)
    # A restart with the key reads them back (deliveries signed with the stored secret).
    async with app_factory.running(**SETTINGS, encryption_key=KEY_A) as api:
        await _delivered(api, receiver, session["id"], hook["secret"])


async def _refusal(app_factory: AppFactory, **overrides: Any) -> str:
    with pytest.raises(EncryptionKeyError) as refused:
        async with app_factory.running(**SETTINGS, **overrides):
            pass
    return str(refused.value)


async def test_wrong_or_missing_key_refuses_to_start(
    app_factory: AppFactory, receiver: Receiver
) -> None:
    async with app_factory.running(**SETTINGS, encryption_key=KEY_A) as api:
        await _secrets_setup(api, receiver)
    kid_a, kid_b = Cipher.from_text(KEY_A).kid, Cipher.from_text(KEY_B).kid

    wrong = await _refusal(app_factory, encryption_key=KEY_B)
    assert "is not the key this database was encrypted with" in wrong
    assert kid_a in wrong
    assert kid_b in wrong
    missing = await _refusal(app_factory)
    assert "ENCRYPTION_KEY is not set" in missing


def test_malformed_key_is_refused(tmp_path: Path) -> None:
    for bad in ("correct horse battery staple", KEY_A[:-2], KEY_A + "AAAA"):
        with pytest.raises(ValueError, match="32 random bytes"):
            make_settings("sqlite+aiosqlite://", tmp_path, encryption_key=bad)


def test_a_token_does_not_open_in_another_row_or_column() -> None:
    sealer = Sealer(Cipher.from_text(KEY_A))
    secret_field, previous_field = SEALED[0], SEALED[1]
    assert secret_field.model is previous_field.model is WebhookRow
    token = sealer.seal(secret_field, "whk_1", "whsec_abc")
    assert sealer.open(secret_field, "whk_1", token) == "whsec_abc"
    with pytest.raises(CipherError):
        Sealer(sealer.cipher).open(secret_field, "whk_2", token)
    with pytest.raises(CipherError):
        Sealer(sealer.cipher).open(previous_field, "whk_1", token)


def test_large_values_such_as_an_engines_auth_state_are_not_kept_decrypted() -> None:
    """Each save of an engine's auth state reads its row first and writes a new token:
    kept decrypted, up to 4096 copies of a state of megabytes stayed in memory."""
    sealer = Sealer(Cipher.from_text(KEY_A))
    auth = next(f for f in SEALED if f.model is EngineAuthRow)
    state = {"creds": "x" * 100_000}
    for _save in range(3):
        assert sealer.open(auth, "ses_1", sealer.seal(auth, "ses_1", state)) == state
    secret = next(f for f in SEALED if (f.model, f.column) == (WebhookRow, "secret"))
    assert sealer.open(secret, "whk_1", sealer.seal(secret, "whk_1", "whsec_abc")) == "whsec_abc"
    assert len(sealer._opened) == 1  # the secret, read by every delivery, is kept


def _cli(
    database_url: str, data_dir: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ENCRYPTION_KEY")}
    environ.update(DATABASE_URL=database_url, DATA_DIR=str(data_dir), **env)
    return subprocess.run(
        [sys.executable, "-m", "openwa", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=data_dir.parent,
    )


def _rotate(
    database_url: str, data_dir: Path, new: str = KEY_B
) -> subprocess.CompletedProcess[str]:
    """`openwa keys rotate-encryption` from KEY_A to `new`."""
    return _cli(
        database_url,
        data_dir,
        "keys",
        "rotate-encryption",
        ENCRYPTION_KEY=KEY_A,
        ENCRYPTION_KEY_NEW=new,
    )


async def test_rotation_re_encrypts_and_the_old_key_then_fails(
    app_factory: AppFactory, receiver: Receiver, database_url: str, tmp_path: Path
) -> None:
    async with app_factory.running(**SETTINGS, encryption_key=KEY_A) as api:
        session, hook = await _secrets_setup(api, receiver)
    before = await _raw(database_url)

    rotated = _rotate(database_url, app_factory.data_dir)
    assert rotated.returncode == 0, rotated.stderr
    kid_b = Cipher.from_text(KEY_B).kid
    assert kid_b in rotated.stdout

    after = await _raw(database_url)
    for column, values in after.items():
        if column != "sessions.config":
            assert all(f"enc:v1:{kid_b}:" in v for v in values), (column, values)
    assert after["webhooks.secret"] != before["webhooks.secret"]
    assert "is not the key" in await _refusal(app_factory, encryption_key=KEY_A)
    async with app_factory.running(**SETTINGS, encryption_key=KEY_B) as api:
        await _delivered(api, receiver, session["id"], hook["secret"])

    # Rotating again from the old key is refused, and changes nothing.
    again = _rotate(database_url, app_factory.data_dir, new=generate_key())
    assert again.returncode == 3, again.stderr
    assert "is not the key" in again.stderr
    assert await _raw(database_url) == after


async def test_rotation_re_encrypts_the_stored_webjs_profiles_too(
    app_factory: AppFactory, database_url: str, tmp_path: Path
) -> None:
    """whatsapp-web.js' profiles are kept in storage, not in the database: left sealed
    with the old key, their sessions could not start again after a rotation."""
    old, new = Cipher.from_text(KEY_A), Cipher.from_text(KEY_B)
    zipped = tmp_path / "profile.zip"
    async with app_factory.running(**SETTINGS, encryption_key=KEY_A) as api:
        session = await api.create_session("webjs-profile", engine="mock")
        zipped.write_bytes(b"PK profile bytes")
        await ProfileStore(api.services.storage, old).save(session["id"], zipped)
    # A whatsapp-web.js session as far as the rotation looks (starting one needs the
    # bridge): only those have a profile to re-encrypt.
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE sessions SET engine = 'webjs' WHERE id = :id"), {"id": session["id"]}
            )
    finally:
        await engine.dispose()
    storage = build_storage(app_factory.settings(**SETTINGS))

    rotated = _rotate(database_url, app_factory.data_dir)  # the server stopped
    assert rotated.returncode == 0, rotated.stderr
    assert "re-encrypted 1 whatsapp-web.js profiles" in rotated.stdout
    opened = await ProfileStore(storage, new).load(session["id"], tmp_path)
    assert opened is not None
    assert opened.read_bytes() == b"PK profile bytes"
    with pytest.raises(CipherError):
        await ProfileStore(storage, old).load(session["id"], tmp_path)

    # A run again with the same keys finds the database and the profile done.
    again = _rotate(database_url, app_factory.data_dir)
    assert again.returncode == 0, again.stderr
    assert "already encrypted" in again.stdout
    assert "re-encrypted 0 whatsapp-web.js profiles" in again.stdout


# The refusal reads the same row through the same code on both databases: one is enough
# for this slow case (two server starts); the rotation cases run on both.
@pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)
def test_server_refuses_to_start_with_a_wrong_key(database_url: str, tmp_path: Path) -> None:
    server = ServerProcess(database_url, tmp_path / "data", ENCRYPTION_KEY=KEY_A)
    server.start()
    server.stop()
    for env in ({"ENCRYPTION_KEY": KEY_B}, {"ENCRYPTION_KEY": ""}):
        refused = ServerProcess(database_url, tmp_path / "data", **env)
        refused.launch()
        assert refused.wait_exit() == 3, refused.log()
        assert "ENCRYPTION_KEY" in refused.log()
        assert "Traceback" not in refused.log()


def test_generated_keys_are_accepted(tmp_path: Path) -> None:
    made = _cli("sqlite+aiosqlite://", tmp_path / "data", "keys", "gen-encryption-key")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert len(key) == 43
    settings: Settings = make_settings("sqlite+aiosqlite://", tmp_path, encryption_key=key)
    assert settings.cipher() is not None
