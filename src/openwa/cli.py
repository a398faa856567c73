"""The `openwa` command: serve, manage keys, upgrade the database."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openwa.config import Settings
from openwa.db.encryption import EncryptionKeyError
from openwa.db.instance_lock import InstanceLocked
from openwa.keys.principal import Role
from openwa.kit.fields import present
from openwa.kit.private_files import use_private_umask

if TYPE_CHECKING:
    from openwa.kit.cipher import Cipher

app = typer.Typer(help="OpenWA: a self-hosted WhatsApp HTTP API gateway.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys directly in the database.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
engines_app = typer.Typer(
    help="The Node.js bridge of Baileys and whatsapp-web.js.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(engines_app, name="engines")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Overrides HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides PORT")] = None,
) -> None:
    """Serve the API (upgrades the database schema first)."""
    from openwa.app import create_app
    from openwa.logs import install_redaction

    overrides = present({"host": host, "port": port})
    settings = Settings(**overrides)
    config = server_config(settings, _OneLineRefusal(create_app(settings)))
    # uvicorn configured its loggers just now (their WebSocket lines carry the query).
    install_redaction()
    server = _Server(config)
    server.run()
    if not server.started:
        raise typer.Exit(3)


def server_config(settings: Settings, app: ASGIApp) -> uvicorn.Config:
    """uvicorn's configuration. Idle connections are kept `HTTP_KEEPALIVE_S` (uvicorn's
    own default is 5 s): a proxy or client that keeps its connections longer (nginx's
    upstream pools, load balancers at 60 s) sends its next request on one the server is
    closing just then, and gets a 502 or "Server disconnected" for a request never read."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        timeout_keep_alive=settings.http_keepalive_s,
        log_level=settings.log_level,
        access_log=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        # Clients of /ws have nothing to send (their messages are read and dropped): a
        # large one closes the socket (1009) instead of being read, and no compression is
        # agreed, so no small frame inflates into a large one here.
        ws_max_size=WS_MAX_CLIENT_MESSAGE,
        ws_per_message_deflate=False,
    )


WS_MAX_CLIENT_MESSAGE = 4096  # bytes


class _OneLineRefusal:
    """A start refused because another instance holds the database, or because
    ENCRYPTION_KEY is missing or wrong, fails with one line.

    Starlette reports a failed startup with the whole traceback, which uvicorn logs; for
    an expected refusal that buries the reason. Other failures keep their traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold_failure(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                held.append(message)
            else:
                await send(message)

        try:
            await self.app(scope, receive, hold_failure)
        except (InstanceLocked, EncryptionKeyError) as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        except BaseException:
            for message in held:
                await send(message)
            raise
        for message in held:
            await send(message)


# Allocations between young collections (CPython's default is 700). A busy server makes
# short-lived ORM rows, requests and events by the thousand a second; at 700 the young
# and middle collections ran a few hundred times a second.
_GC_YOUNG_THRESHOLD = 10_000


class _Server(uvicorn.Server):
    """uvicorn re-raises the SIGTERM it drained on; a clean drain should exit 0.

    Once started, everything alive (modules, the app, its adapters: some 200,000 objects)
    is frozen out of the collector: a full collection walked all of them, 80 ms each
    time, while requests waited (measured in the webhook fan-out benchmark). They stay
    alive for the process's life anyway; what is made later is collected as before.
    """

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            gc.collect()
            gc.freeze()
            gc.set_threshold(_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the schema to the newest revision (safe to run from several hosts)."""
    from openwa.db import migrate
    from openwa.db.engine import create_engine

    settings = Settings()

    async def run() -> None:
        engine = create_engine(settings.resolved_database_url)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    typer.echo("database is up to date")


@engines_app.command("install")
def engines_install() -> None:
    """Install the bridge's pinned Node.js dependencies (`npm ci`) under NODE_BRIDGE_DIR;
    otherwise the first Baileys or whatsapp-web.js session does it."""
    from openwa.engines.bridge.install import BridgeUnavailable, NodeRuntime

    settings = Settings()
    runtime = NodeRuntime(settings.node_binary, settings.resolved_node_bridge_dir)

    async def run() -> str:
        if not runtime.installed():
            await runtime.install()
        return await runtime.version()

    try:
        version = asyncio.run(run())
    except BridgeUnavailable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(3) from None
    typer.echo(f"the bridge is installed in {runtime.directory} (Node.js {version})")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key")],
    role: Annotated[Role, typer.Option(help="admin, operator or viewer")] = Role.OPERATOR,
    session: Annotated[
        list[str] | None, typer.Option("--session", help="Limit to this session (repeatable)")
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(help="When the key stops working: ISO 8601 with a zone, in the future"),
    ] = None,
    cidr: Annotated[
        list[str] | None,
        typer.Option("--cidr", help="Accept the key only from this network (repeatable)"),
    ] = None,
) -> None:
    """Create a key and print it (shown only this once)."""
    from pydantic import ValidationError

    from openwa.app import build_services
    from openwa.db import migrate
    from openwa.db.unit_of_work import unit_of_work
    from openwa.keys.schemas import ApiKeyCreate

    settings = Settings()
    try:
        # The same checks as POST /api/keys: a bad value is refused before anything runs.
        data = ApiKeyCreate.model_validate(
            {
                "name": name,
                "role": role,
                "sessions": session or None,
                "expiresAt": expires,
                "allowedCidrs": cidr or None,
            }
        )
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "key"
            typer.echo(f"{field}: {error['msg']}", err=True)
        raise typer.Exit(2) from None

    async def run() -> str:
        services = build_services(settings)
        try:
            await migrate.upgrade(services.db_engine)
            async with unit_of_work(services.db) as db:
                created = await services.keys.create(db, data)
            return created.key
        finally:
            await services.cache.close()
            await services.db_engine.dispose()

    typer.echo(asyncio.run(run()))


@keys_app.command("gen-encryption-key")
def keys_gen_encryption_key() -> None:
    """Print a new random key for ENCRYPTION_KEY (32 bytes, base64url)."""
    from openwa.kit.cipher import generate_key

    typer.echo(generate_key())


@keys_app.command("rotate-encryption")
def keys_rotate_encryption() -> None:
    """Re-encrypt stored secrets from ENCRYPTION_KEY to ENCRYPTION_KEY_NEW (server stopped).

    The database in one transaction (on any failure there nothing changes), then the
    whatsapp-web.js profiles in storage, each on its own (a run again with the same keys
    does what is left). Afterwards start the server with ENCRYPTION_KEY set to the new
    key; the old one no longer opens the database.
    """
    from sqlalchemy import select

    from openwa.db import migrate
    from openwa.db.encryption import is_under, rotate
    from openwa.db.engine import create_engine, create_session_factory
    from openwa.db.instance_lock import instance_lock
    from openwa.db.models import SessionRow
    from openwa.db.unit_of_work import unit_of_work
    from openwa.engines.bridge.engine import WEBJS
    from openwa.kit.cipher import Cipher

    settings = Settings()
    old, new = settings.cipher(), settings.encryption_key_new
    if old is None or new is None:
        typer.echo("set ENCRYPTION_KEY (the key in use) and ENCRYPTION_KEY_NEW", err=True)
        raise typer.Exit(2)
    new_cipher = Cipher.from_text(new.get_secret_value())

    async def run() -> tuple[int | None, int, list[str]]:
        # A running server would go on writing with the old key: it must be stopped.
        lock = instance_lock(settings.resolved_database_url)
        await lock.acquire()
        engine = create_engine(settings.resolved_database_url)
        try:
            await migrate.upgrade(engine)
            factory = create_session_factory(engine)
            written: int | None
            async with factory() as db:
                # Run again after the profiles' step failed: the database is done.
                done = await is_under(db, new_cipher)
            if done:
                written = None
            else:
                async with unit_of_work(factory) as db:
                    written = await rotate(db, old, new_cipher)
            async with factory() as db:
                session_ids = list(
                    (
                        await db.execute(
                            select(SessionRow.id).where(SessionRow.engine == WEBJS.name)
                        )
                    ).scalars()
                )
            resealed, failed = await _reseal_profiles(settings, old, new_cipher, session_ids)
            return written, resealed, failed
        finally:
            await engine.dispose()
            await lock.release()

    try:
        written, resealed, failed = asyncio.run(run())
    except InstanceLocked as exc:
        typer.echo(f"stop the server before rotating: {exc}", err=True)
        raise typer.Exit(3) from None
    except EncryptionKeyError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(3) from None
    if written is None:
        typer.echo(f"the database is already encrypted with key id {new_cipher.kid}")
    else:
        typer.echo(f"re-encrypted {written} values with key id {new_cipher.kid}")
    typer.echo(f"re-encrypted {resealed} whatsapp-web.js profiles in storage")
    if failed:
        typer.echo(
            "could not re-encrypt the stored profiles of sessions "
            f"{', '.join(failed)}: run this command again with the same keys",
            err=True,
        )
        raise typer.Exit(4)
    typer.echo("start the server with ENCRYPTION_KEY set to the new key")


async def _reseal_profiles(
    settings: Settings, old: Cipher, new: Cipher, session_ids: list[str]
) -> tuple[int, list[str]]:
    """whatsapp-web.js' profiles live in storage, beside the database: sealed again
    with the new key, or their sessions could not start after a rotation (a new link
    the only way out). Each on its own: the ones that fail are named, and a run again
    does only those (the others are under the new key already)."""
    from openwa.app import build_storage
    from openwa.engines.bridge.profiles import ProfileStore

    if not session_ids:
        return 0, []  # no store opened for nothing (S3 may be slow to answer)
    profiles = ProfileStore(build_storage(settings), old)
    resealed, failed = 0, []
    for session_id in session_ids:
        try:
            resealed += await profiles.reseal(session_id, new)
        except Exception as exc:
            typer.echo(f"profile of {session_id}: {type(exc).__name__}: {exc}", err=True)
            failed.append(session_id)
    return resealed, failed


def main() -> None:
    # Before anything is created under DATA_DIR (see `openwa.kit.private_files`).
    use_private_umask()
    app()
