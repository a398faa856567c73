"""Baileys and whatsapp-web.js as the API process sees them: Node.js bridge processes
(shards of at most N sessions of one engine each, started as sessions need them) and
one thin client per session that turns port calls into bridge commands and the
libraries' own events into ours (`baileys.py`, `webjs.py`).

When a bridge dies, only its sessions report `Disconnected`; the runtime reconnects
them to a new bridge with their saved auth state, so no scan is needed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import shutil
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from openwa.engines.base import (
    SEND_OUTCOME_UNKNOWN,
    WHATSAPP_CAPABILITIES,
    Authenticated,
    AuthNotOurs,
    Connected,
    Disconnected,
    EngineClient,
    EngineEvent,
    EngineRefused,
    GroupInfo,
    MessageReceived,
    OutgoingMessage,
    PairingNotAvailable,
    ParticipantResult,
    SendFailed,
    SessionContext,
)
from openwa.engines.bridge import baileys, webjs
from openwa.engines.bridge.groups import group_info
from openwa.engines.bridge.install import BridgeUnavailable, NodeRuntime
from openwa.engines.bridge.process import BridgeProcess
from openwa.engines.bridge.profiles import ProfileStore
from openwa.engines.children import REQUEST_TIMEOUT_S, ChildProcess, OutcomeUnknown, WorkerGone
from openwa.engines.content import Media, to_json
from openwa.engines.flow import HoldTeller
from openwa.engines.shards import Shard, ShardMap, rss_mb
from openwa.engines.whatsmeow.transfer import TransferDirectory
from openwa.media import details

log = structlog.get_logger(__name__)

_WATCH_S = 15.0
# A stop or logout is not waited for longer: a browser stuck in a dial (a proxy that
# never answers) can hold whatsapp-web.js' `destroy()`; the bridge's process group ends
# whatever is left when the bridge itself stops.
_STOP_TIMEOUT_S = 10.0
# How long a session's link waits for its auth state to be saved (see `_on_translated`).
_LINKED_SAVE_WAIT_S = 5.0
_QR_MAX_RETRIES = 6
# The bridge's own event: it closed the session's connection, not having heard from us.
FENCED = "bridge.fenced"


@dataclass(frozen=True)
class EngineKind:
    """What differs between the bridge's engines."""

    name: str
    capabilities: frozenset[str]
    # Whether a send cut short by a dying bridge may go again (same id: Baileys).
    resends_safely: bool
    translate: Callable[[str, Any, str | None], list[Any]]
    # Whether the bridge can hold a session's reports back (`engines.flow`): Baileys
    # pauses its websocket; whatsapp-web.js has no such handle on its browser.
    holds_back: bool = False


BAILEYS = EngineKind(
    name="baileys",
    capabilities=WHATSAPP_CAPABILITIES | {"proxy"},
    resends_safely=True,
    translate=baileys.translate,
    holds_back=True,
)
WEBJS = EngineKind(
    name="webjs",
    # whatsapp-web.js cannot ask for a contact's presence.
    capabilities=(WHATSAPP_CAPABILITIES - {"presence_subscribe"}) | {"proxy"},
    resends_safely=False,
    translate=webjs.translate,
)


class BridgeEngine:
    def __init__(
        self,
        kind: EngineKind,
        runtime: NodeRuntime,
        transfer_root: Path,
        *,
        sessions_per_worker: int,
        max_sessions: int | None = None,
        chromium_path: str | None = None,
        worker_max_mb: int | None = None,
        log_level: str = "warn",
        profiles: ProfileStore | None = None,
        max_media_bytes: int = 64 << 20,
        fence_after_s: float | None = None,
        max_image_dimension: int = 4096,
    ) -> None:
        """`max_image_dimension`: MEDIA_MAX_IMAGE_DIMENSION, the largest picture whose
        thumbnail we make for Baileys (`media/details.py`)."""
        self.kind = kind
        self.name = kind.name
        self.capabilities = kind.capabilities
        self.max_sessions = max_sessions
        self.node = runtime
        self.chromium_path = chromium_path
        self.worker_max_mb = worker_max_mb
        self._log_level = log_level
        self.shards = ShardMap(sessions_per_worker)
        self.transfers = TransferDirectory(transfer_root)
        self._clients: dict[str, BridgeClient] = {}
        self._install: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self.watch_s = _WATCH_S
        # whatsapp-web.js' saved browser profiles (its auth state), in our storage.
        self.profiles = profiles
        self.max_media_bytes = max_media_bytes
        self.max_image_dimension = max_image_dimension
        # Media details made at once (`baileys_details`): each holds a thread of the
        # default pool while ffmpeg runs, which readiness, DNS and file work share.
        self.describing = asyncio.Semaphore(2)
        # A bridge that hears nothing from us this long drops its sessions' connections
        # (children.py, Fencing); None: never.
        self.fence_after_s = fence_after_s
        # An inbound download that has not ended by then is given up (`mediaError`).
        self.download_timeout_s = 300.0
        # An attempt that hears nothing from the library for this long is ended.
        self.attempt_timeout_s = 90.0

    @property
    def resends_safely(self) -> bool:
        return self.kind.resends_safely

    def client(self, context: SessionContext) -> EngineClient:
        client = BridgeClient(self, context)
        self._clients[context.session_id] = client
        return client

    def release(self, client: BridgeClient) -> None:
        if self._clients.get(client.session_id) is client:
            del self._clients[client.session_id]

    async def unavailable(self) -> str | None:
        """Why this instance cannot run the engine's sessions, or None."""
        try:
            await self.node.version()
        except BridgeUnavailable as exc:
            return str(exc)
        if self.kind is WEBJS and not self.browser():
            return "no chromium was found (CHROMIUM_PATH)"
        return None

    def browser(self) -> str | None:
        """The browser whatsapp-web.js drives: CHROMIUM_PATH, else the first on PATH."""
        if self.chromium_path:
            return self.chromium_path if Path(self.chromium_path).exists() else None
        for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
            found = shutil.which(name)
            if found:
                return found
        return None

    async def ensure_installed(self) -> None:
        """Return once the bridge is installed (`npm ci` the first time, about 20 s).

        One task installs for every session waiting, so a session that stops waiting
        (stopped, deleted) never cancels the install for the others; shutting down
        does (`close`). After a failed install, the next caller tries again."""
        task = self._install
        if task is None or task.done():
            # Checked again each time (cheap once installed): a directory removed or
            # stamped by another version since is installed again.
            task = self._install = asyncio.create_task(self.node.ensure())
        await asyncio.shield(task)

    async def shard_worker(self, shard: Shard) -> ChildProcess:
        async with shard.starting:
            if shard.process is None or not shard.process.alive:
                await self.ensure_installed()
                process = BridgeProcess(
                    self.name,
                    self._on_frame,
                    lambda: self._on_exit(shard),
                    fence_after_s=self.fence_after_s,
                )
                await process.start(
                    self.node.node,
                    self.node.entry,
                    self.transfers.path,
                    shard.number,
                    self._log_level,
                )
                shard.process = process
                if self._watch is None or self._watch.done():
                    self._watch = asyncio.create_task(self._watch_workers())
            return shard.process

    async def request(
        self, op: str, session: str, timeout: float = REQUEST_TIMEOUT_S, **args: Any
    ) -> Any:
        shard = self.shards.of(session)
        process = shard.process if shard is not None else None
        if process is None or not process.alive:
            raise SendFailed(f"the session's {self.name} bridge is not running")
        try:
            return await process.request(op, timeout, session=session, **args)
        except OutcomeUnknown as exc:
            if op == "send" and not self.resends_safely:
                raise SendFailed(str(exc), retryable=False, code=SEND_OUTCOME_UNKNOWN) from exc
            raise SendFailed(str(exc)) from exc
        except WorkerGone as exc:
            raise SendFailed(str(exc)) from exc

    async def start(self, session_id: str, **args: Any) -> None:
        shard = self.shards.place(session_id)
        process = await self.shard_worker(shard)
        await process.request("start", session=session_id, **args)

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        client = self._clients.get(frame.get("session") or "")
        if client is not None:
            await client.on_frame(frame)

    async def _on_exit(self, shard: Shard) -> None:
        reason = shard.exit_reason or f"the {self.name} bridge exited"
        shard.exit_reason = None
        for session_id in list(shard.sessions):
            client = self._clients.get(session_id)
            if client is not None:
                await client.on_worker_exit(reason)

    async def _watch_workers(self) -> None:
        """Recycle a bridge over its memory budget (a leaking browser or library)."""
        while True:
            await asyncio.sleep(self.watch_s)
            for shard in list(self.shards.shards):
                process = shard.process
                if process is None or not process.alive or process.pid is None:
                    continue
                rss = _tree_rss_mb(process.pid)
                if self.worker_max_mb is not None and rss > self.worker_max_mb:
                    log.warning("bridge_recycled", engine=self.name, shard=shard.number, mb=rss)
                    shard.exit_reason = (
                        f"the {self.name} bridge was recycled ({rss:.0f} MB, over its "
                        f"budget of {self.worker_max_mb} MB)"
                    )
                    task = asyncio.create_task(process.stop())
                    self._stopping.add(task)
                    task.add_done_callback(self._stopping.discard)

    async def check(self) -> None:
        for shard in self.shards.shards:
            process = shard.process
            if process is not None and process.alive:
                await process.request("ping", timeout=5)

    async def forget(self, session_id: str, auth: dict[str, Any] | None) -> None:
        with contextlib.suppress(SendFailed, EngineRefused):
            await self.request("stop", session=session_id, timeout=_STOP_TIMEOUT_S)
        self.shards.drop(session_id)
        if self.profiles is not None:
            await self.profiles.delete(session_id)

    async def close(self) -> None:
        if self._install is not None and not self._install.done():
            self._install.cancel()  # `npm ci` is killed with it (install.py)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._install
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for task in list(self._stopping):
            with contextlib.suppress(Exception):
                await task
        await asyncio.gather(
            *(s.process.stop() for s in self.shards.shards if s.process is not None),
            return_exceptions=True,
        )
        for shard in self.shards.shards:
            shard.process = None
        self.transfers.close()


def _tree_rss_mb(pid: int) -> float:
    """The resident memory of a bridge and its children (whatsapp-web.js' browsers)."""
    total = rss_mb(pid) or 0.0
    for child in _children(pid):
        total += _tree_rss_mb(child)
    return total


def _children(pid: int) -> Iterable[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


async def baileys_details(path: Path, kind: str, mimetype: str, max_side: int) -> dict[str, Any]:
    """A picture's or clip's size, length and thumbnail for Baileys' send (`media/details.py`,
    capped): without a thumbnail (`null`), Baileys makes none, where it would run ffmpeg
    on the file itself, through a shell, with no limit on what the decoder may take."""
    found = await asyncio.to_thread(details.describe, path, kind, mimetype, max_side)
    shown: dict[str, Any] = {
        "thumbnail": base64.b64encode(found.thumbnail).decode() if found.thumbnail else None
    }
    if found.width and found.height:
        shown.update(width=found.width, height=found.height)
    if found.seconds is not None:
        shown["seconds"] = found.seconds
    return shown


class BridgeClient:
    """One session on a bridge. Baileys' auth state (creds and signal keys) is kept here
    as the bridge reports it and saved through the session's auth store."""

    def __init__(self, engine: BridgeEngine, context: SessionContext) -> None:
        self._engine = engine
        self._ctx = context
        self.session_id = context.session_id
        self.resends_safely = engine.resends_safely
        self._auth: dict[str, Any] | None = None
        self._auth_lock = asyncio.Lock()
        # A restart WhatsApp asked for (515) made since the connection last opened.
        self._restarted = False
        self._auth_dirty = False
        self._saver: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._me: str | None = None
        self._profile: Path | None = None  # a saved profile handed to the bridge
        # Ends an attempt that hears nothing from the library (see `_watch_attempt`).
        self._watchdog: asyncio.Task[None] | None = None
        self._heard = asyncio.Event()
        # A start waiting for the bridge's first install (see `connect`).
        self._waiting: asyncio.Task[None] | None = None
        # The bridge holds back while the core is behind with this session's reports.
        self._hold = (
            HoldTeller(context.flow, lambda held: self._call("hold", hold=held), self.session_id)
            if engine.kind.holds_back
            else None
        )

    async def _call(self, op: str, **args: Any) -> Any:
        return await self._engine.request(op, session=self.session_id, **args)

    # Frames from the bridge, in order.

    async def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("kind")
        if kind == "auth":
            await self._on_auth(frame)
        elif kind == "event":
            name = str(frame.get("name") or "")
            if name == FENCED:
                await self._on_fenced(frame.get("data") or {})
                return
            try:
                found = self._engine.kind.translate(name, frame.get("data"), self._me)
            except Exception:
                log.warning(
                    "bridge_event_unreadable", engine=self._engine.name, name=name, exc_info=True
                )
                return
            if found:  # progress (a QR, open, close, a message), not "connecting"
                self._heard.set()
            for item in found:
                await self._on_translated(item)

    async def _on_translated(self, item: Any) -> None:
        if isinstance(item, baileys.Opened | webjs.Ready):
            self._restarted = False
            # What the bridge reported is saved before the session counts as linked: a
            # kill right after a scan otherwise lost the new device's creds (a new QR).
            # Bounded: this runs on the bridge's reader, and a save that keeps failing
            # (the database down) must not hold up its other sessions' frames.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._flush_auth()), _LINKED_SAVE_WAIT_S)
            me = getattr(item, "me", None) or _me_of(self._auth)
            self._me = me
            if isinstance(item, webjs.Ready) and me and self._auth is None:
                # The profile in storage is the device; this row says it is linked.
                async with self._auth_lock:
                    self._auth = {"me": me}
                    await self._ctx.auth.save(self._auth)
            phone = baileys.phone_of(me)
            name = getattr(item, "push_name", None) or _name_of(self._auth)
            await self._ctx.emit(Authenticated(phone, name))
            await self._ctx.emit(Connected())
            if self._ctx.config.get("markOnline"):
                self._in_background(
                    self._call("presence", chatId=None, state="available"), "mark online"
                )
        elif isinstance(item, baileys.Closed):
            if item.status == baileys.RESTART_REQUIRED and not self._restarted:
                # After a scan WhatsApp asks for a new connection with the new creds:
                # once at once. Another before the connection opened goes to the
                # runtime as a drop (its backoff paces it): restarted at once each
                # time, an outdated client logged in again and again, in a loop.
                self._restarted = True
                self._in_background(self._restart(), "restart")
                return
            await self._ctx.emit(baileys.closed_event(item))
        else:
            event: EngineEvent = item
            await self._ctx.emit(self._checked_media(event))

    def _checked_media(self, event: EngineEvent) -> EngineEvent:
        """A downloaded file is taken only from this engine's transfer directory."""
        if not isinstance(event, MessageReceived) or event.media is None:
            return event
        path = event.media.path
        home = self._engine.transfers.path.resolve()
        if path is not None and path.resolve().parent == home:
            return event
        log.warning("bridge_media_outside_transfer_dir", session=self.session_id)
        content = {**event.content, "mediaError": "not downloaded"}
        return dataclasses.replace(event, media=None, content=content)

    async def _on_auth(self, frame: dict[str, Any]) -> None:
        profiles = self._engine.profiles
        if "profileZip" in frame and profiles is not None:
            await profiles.save(self.session_id, Path(frame["profileZip"]))
            return
        if frame.get("cleared") and profiles is not None:
            # whatsapp-web.js' RemoteAuth deletes its profile on many disconnects (a
            # conflict with WhatsApp Web in a browser, too); a logout is ours to see
            # (LoggedOut), and forgetting the session deletes the saved profile.
            log.info("webjs_profile_cleared_ignored", session=self.session_id)
            return
        if frame.get("cleared"):
            await self._flush_auth()
            async with self._auth_lock:
                self._auth = None
                await self._ctx.auth.clear()
            return
        self._merge_auth(frame)
        # Saved by a task of its own, the latest state at a time: a bridge's frames (all
        # its sessions') are not held while the database writes, and a burst of key
        # updates (one per message) costs one write, not one each.
        self._auth_dirty = True
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save_auth())

    def _in_background(self, work: Coroutine[Any, Any, Any], what: str) -> None:
        """Bridge calls made on a frame's behalf run apart: the frame handler runs on the
        bridge's reader, so awaiting a reply there would wait for itself."""

        async def run() -> None:
            try:
                await work
            except Exception as exc:
                log.warning(
                    "bridge_call_failed", session=self.session_id, what=what, error=str(exc)
                )

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restart(self) -> None:
        try:
            await self._flush_auth()  # the creds of the scan, before connecting with them
            await self._start()
        except Exception as exc:
            await self._ctx.emit(Disconnected(f"restart after linking failed: {exc}"))

    def _merge_auth(self, frame: dict[str, Any]) -> None:
        """`creds` replace, `keys` merge (None deletes), in place: only the buckets a
        frame names are touched."""
        state = self._auth if self._auth is not None else {}
        if "creds" in frame:
            state["creds"] = frame["creds"]
        keys: dict[str, dict[str, Any]] = state.setdefault("keys", {})
        for kind, values in (frame.get("keys") or {}).items():
            bucket = keys.setdefault(kind, {})
            for key_id, value in (values or {}).items():
                if value is None:
                    bucket.pop(key_id, None)
                else:
                    bucket[key_id] = value
        self._auth = state

    async def _save_auth(self) -> None:
        while self._auth_dirty:
            self._auth_dirty = False
            async with self._auth_lock:
                if self._auth is None:
                    return
                try:
                    await self._ctx.auth.save(self._auth)
                except AuthNotOurs:
                    # The session is another's now (or a newer client's here): trying
                    # again cannot help, and a saver that kept trying held up this
                    # client's stop, and with it the ownership loop that stops it.
                    log.warning("bridge_auth_not_ours", session=self.session_id)
                    self._auth_dirty = False
                    return
                except Exception:
                    log.exception("bridge_auth_save_failed", session=self.session_id)
                    self._auth_dirty = True
                    await asyncio.sleep(1.0)

    async def _flush_auth(self) -> None:
        """Wait until what the bridge reported is saved."""
        while self._saver is not None and not self._saver.done():
            await asyncio.shield(self._saver)

    async def on_worker_exit(self, reason: str) -> None:
        if self._started:
            self._stop_watching()
            await self._ctx.emit(Disconnected(reason))

    async def _on_fenced(self, data: dict[str, Any]) -> None:
        """The bridge heard nothing from us for too long and closed the connection
        (children.py, Fencing): lost, as far as the runtime's reconnect is concerned."""
        reason = str(data.get("reason") or "fenced: the API process stopped answering")
        await self.on_worker_exit(reason)

    async def _watch_attempt(self) -> None:
        """A proxy or network that swallows the dial leaves both libraries waiting with
        nothing to report (Baileys past its own connect timeout, whatsapp-web.js after
        Chromium gave up): an attempt that hears nothing in `attempt_timeout_s` ends as
        a lost connection, so the runtime tries again with backoff and says why."""
        try:
            await asyncio.wait_for(self._heard.wait(), self._engine.attempt_timeout_s)
        except TimeoutError:
            if self._started:
                seconds = self._engine.attempt_timeout_s
                await self._ctx.emit(
                    Disconnected(f"no answer from WhatsApp in {seconds:.0f} s (network or proxy)")
                )

    def _stop_watching(self) -> None:
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        self._watchdog = None

    # Connection.

    async def _start(self) -> None:
        args: dict[str, Any] = {
            "auth": self._auth,
            "proxy": self._ctx.config.get("proxy"),
            # whatsapp-web.js rotates codes every 20 s for as long as it is let: after
            # this many the session fails with QR_TIMEOUT (Baileys stops by itself).
            "qrMaxRetries": _QR_MAX_RETRIES,
            "transferDir": str(self._engine.transfers.path),
            "maxMediaBytes": self._engine.max_media_bytes,
            "downloadTimeoutS": self._engine.download_timeout_s,
        }
        if self._engine.kind is WEBJS:
            args["chromiumPath"] = self._engine.browser()
            self._drop_profile_file()
            if self._engine.profiles is not None:
                self._profile = await self._engine.profiles.load(
                    self.session_id, self._engine.transfers.path
                )
                args["profileZip"] = str(self._profile) if self._profile else None
        self._stop_watching()
        self._heard.clear()
        await self._engine.start(self.session_id, **args)
        self._watchdog = asyncio.create_task(self._watch_attempt())
        if self._hold is not None:
            self._hold.connected()  # a new socket reads freely

    def _drop_profile_file(self) -> None:
        """The decrypted copy handed to the bridge is not kept longer than needed."""
        if self._profile is not None:
            self._profile.unlink(missing_ok=True)
            self._profile = None

    async def connect(self) -> None:
        await self._flush_auth()
        async with self._auth_lock:
            self._auth = await self._ctx.auth.load()
        self._me = _me_of(self._auth)
        self._started = True
        if self._waiting is not None and not self._waiting.done():
            return  # a start already waits for the install; it starts the session
        if self._engine.node.installed():
            await self._start()
            return
        # The first session on a machine waits for the bridge's install (`npm ci`, about
        # 20 s): the caller (a create or start request) is answered now, the session
        # stays `initializing`, and a failed install is reported as a failed connect.
        self._waiting = asyncio.create_task(self._start_once_installed())

    async def _start_once_installed(self) -> None:
        try:
            await self._engine.ensure_installed()
            if self._started:
                await self._start()
        except Exception as exc:
            log.warning("bridge_connect_failed", session=self.session_id, error=str(exc))
            await self._ctx.emit(Disconnected(f"connect failed: {exc}"))

    async def disconnect(self) -> None:
        self._started = False
        if self._waiting is not None and not self._waiting.done():
            self._waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._waiting
        self._stop_watching()
        self._drop_profile_file()
        await self._flush_auth()
        with contextlib.suppress(SendFailed, EngineRefused):
            await self._engine.request("stop", self.session_id, _STOP_TIMEOUT_S)
        self._engine.release(self)

    async def logout(self) -> None:
        with contextlib.suppress(SendFailed, EngineRefused):
            await self._engine.request("logout", self.session_id, _STOP_TIMEOUT_S)
        await self.disconnect()
        await self._engine.forget(self.session_id, self._auth)
        async with self._auth_lock:
            self._auth = None
            await self._ctx.auth.clear()

    async def request_pairing_code(self, phone_number: str) -> str:
        try:
            result = await self._call("pairing_code", phone=phone_number)
        except (SendFailed, EngineRefused) as exc:
            raise PairingNotAvailable(str(exc)) from exc
        return str(result["code"])

    # Messages.

    async def send(self, message: OutgoingMessage) -> str | None:
        payload: dict[str, Any] = {
            "id": message.id,
            "chatId": message.chat_id,
            "type": message.type,
            "content": to_json(message.content),
        }
        if not isinstance(message.content, Media):
            result = await self._call("send", **payload)
            return _engine_id(result, message.id)
        if self._ctx.media is None:
            raise SendFailed("no media storage for the engine", retryable=False)
        media = message.content.media
        path = await self._engine.transfers.write(self._ctx.media.stream(media.key))
        # The file crosses by its path; gone once the bridge answered.
        payload["content"]["media"]["path"] = str(path)
        try:
            if self._engine.kind is BAILEYS and message.type in ("image", "video"):
                async with self._engine.describing:
                    shown = await baileys_details(
                        path, message.type, media.mimetype, self._engine.max_image_dimension
                    )
                payload["content"]["media"].update(shown)
            result = await self._call("send", **payload)
        finally:
            path.unlink(missing_ok=True)
        return _engine_id(result, message.id)

    async def stored(self, message_ids: list[str]) -> None:
        return None  # the libraries acknowledge to WhatsApp by themselves

    async def revoke(self, chat_id: str, message_id: str) -> None:
        await self._call("revoke", chatId=chat_id, id=message_id)

    async def mark_read(
        self, chat_id: str, message_ids: list[str], senders: dict[str, str] | None = None
    ) -> None:
        await self._call("read", chatId=chat_id, ids=message_ids, senders=senders or {})

    async def set_presence(self, chat_id: str, state: str) -> None:
        await self._call("presence", chatId=chat_id, state=state)

    async def check_number(self, phone: str) -> str | None:
        result = await self._call("check", phone=phone)
        found = (result or {}).get("id")
        return baileys.chat_id(found) if found else None

    async def subscribe_presence(self, chat_id: str) -> None:
        await self._call("subscribe_presence", chatId=chat_id)

    async def profile_picture(self, chat_id: str) -> str | None:
        result = await self._call("picture", chatId=chat_id)
        url = (result or {}).get("url")
        return str(url) if url else None

    # Groups.

    async def groups(self) -> list[GroupInfo]:
        found = await self._call("groups")
        items = found.values() if isinstance(found, dict) else found or []
        return [group_info(g) for g in items]

    async def group_info(self, group_id: str) -> GroupInfo:
        return group_info(await self._call("group_info", groupId=group_id))

    async def create_group(self, subject: str, participants: list[str]) -> GroupInfo:
        return group_info(
            await self._call("create_group", subject=subject, participants=participants)
        )

    async def update_group(
        self,
        group_id: str,
        subject: str | None,
        description: str | None,
        settings: dict[str, bool] | None,
    ) -> GroupInfo:
        data = await self._call(
            "update_group",
            groupId=group_id,
            subject=subject,
            description=description,
            settings=settings,
        )
        return group_info(data)

    async def change_participants(
        self, group_id: str, action: str, participants: list[str]
    ) -> list[ParticipantResult]:
        results = await self._call(
            "participants", groupId=group_id, action=action, participants=participants
        )
        return [
            ParticipantResult(baileys.chat_id(r.get("jid") or r.get("id")) or "", _status(r))
            for r in results or []
        ]

    async def invite_code(self, group_id: str) -> str:
        result = await self._call("invite_code", groupId=group_id)
        return str(result.get("code") if isinstance(result, dict) else result)

    async def leave_group(self, group_id: str) -> None:
        await self._call("leave_group", groupId=group_id)


def _engine_id(result: Any, ours: str) -> str | None:
    found = (result or {}).get("id") if isinstance(result, dict) else None
    return str(found) if found and found != ours else None


def _me_of(auth: dict[str, Any] | None) -> str | None:
    if isinstance((auth or {}).get("me"), str):  # whatsapp-web.js: the linked account
        return baileys.chat_id((auth or {})["me"])
    me = ((auth or {}).get("creds") or {}).get("me") or {}
    return baileys.chat_id(me.get("id"))


def _name_of(auth: dict[str, Any] | None) -> str | None:
    me = ((auth or {}).get("creds") or {}).get("me") or {}
    name = me.get("name")
    return str(name) if name else None


def _status(result: dict[str, Any]) -> str:
    status = str(result.get("status", "200"))
    return {
        "200": "ok",
        "404": "not_found",
        "409": "already_member",
        "403": "not_member",
    }.get(status, status)
