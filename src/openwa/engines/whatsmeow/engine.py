"""The whatsmeow engine as the API process sees it: worker processes (shards, started
as sessions need them) that run the whatsmeow sessions of this instance, at most
`WHATSMEOW_SESSIONS_PER_WORKER` each, and one thin client per session that turns port
calls into commands and worker frames into engine events.

When a worker dies, only the sessions on it report `Disconnected`; the runtime's
reconnect starts a replacement for that shard, and devices are in whatsmeow's store, so
no scan is needed. The others keep their worker and their connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import structlog

from openwa.engines.base import (
    ENGINE_ERROR,
    SEND_OUTCOME_UNKNOWN,
    WHATSAPP_CAPABILITIES,
    Disconnected,
    EngineClient,
    EngineRefused,
    GroupInfo,
    LoggedOut,
    MessageRevoked,
    OutgoingMessage,
    PairingNotAvailable,
    ParticipantResult,
    QrUpdated,
    SendFailed,
    SessionContext,
)
from openwa.engines.children import ChildProcess, OutcomeUnknown, WorkerGone
from openwa.engines.content import Media
from openwa.engines.shards import Shard, ShardMap, rss_mb
from openwa.engines.whatsmeow.load import WorkerLoad
from openwa.engines.whatsmeow.pairing import pairing_noise_key, pairing_record, qr_noise_key
from openwa.engines.whatsmeow.protocol import (
    decode_event,
    decode_group,
    outgoing_wire,
    pack,
    read_frame,
)
from openwa.engines.whatsmeow.store import DeviceStore
from openwa.engines.whatsmeow.transfer import TransferDirectory

log = structlog.get_logger(__name__)

WHATSMEOW_CAPABILITIES = WHATSAPP_CAPABILITIES | {"history_sync", "proxy"}
# How often each worker's memory and connected sessions are looked at (recycling).
_WATCH_S = 15.0


class WorkerProcess(ChildProcess):
    """One `openwa.engines.whatsmeow.worker` child: length-prefixed orjson frames."""

    label = "whatsmeow worker"
    event_prefix = "whatsmeow_worker"
    # The worker's module; the tests run the real worker with a stand-in at Go's edge.
    module = "openwa.engines.whatsmeow.worker"

    async def start(
        self,
        log_level: str,
        max_media_bytes: int,
        qr_timeout_s: float,
        transfer_dir: Path,
        download_timeout_s: float,
        shard: int = 0,
        max_image_dimension: int = 4096,
    ) -> None:
        await self.spawn(
            [
                sys.executable,
                "-m",
                self.module,
                "--log-level",
                log_level,
                "--max-media-bytes",
                str(max_media_bytes),
                "--max-image-dimension",
                str(max_image_dimension),
                "--qr-timeout-s",
                str(qr_timeout_s),
                "--transfer-dir",
                str(transfer_dir),
                "--download-timeout-s",
                str(download_timeout_s),
            ]
        )
        log.info("whatsmeow_worker_started", pid=self.pid, shard=shard)

    def encode(self, frame: dict[str, Any]) -> bytes:
        return pack(frame)

    async def decode(self, reader: asyncio.StreamReader) -> dict[str, Any] | None:
        return await read_frame(reader)

    def error(self, op: str, error: dict[str, Any]) -> Exception:
        kind, message = error.get("kind"), str(error.get("message") or "whatsmeow error")
        if kind == "pairing":
            return PairingNotAvailable(message)
        if kind in ("send_failed", "not_ready"):
            retryable = bool(error.get("retryable", True))
            return SendFailed(message, retryable=retryable, code=error.get("code") or ENGINE_ERROR)
        if op == "send":
            return SendFailed(message, retryable=False)
        return EngineRefused(message)


class WhatsmeowEngine:
    name = "whatsmeow"
    capabilities = WHATSMEOW_CAPABILITIES
    max_sessions: int | None = None

    def __init__(
        self,
        store: DeviceStore,
        log_level: str = "WARNING",
        max_media_bytes: int = 64 << 20,
        max_image_dimension: int = 4096,
        sessions_per_worker: int = 50,
        worker_max_mb: int | None = None,
        fence_after_s: float | None = None,
    ) -> None:
        self.store = store
        self._log_level = log_level
        self._max_media_bytes = max_media_bytes
        self._max_image_dimension = max_image_dimension
        self._clients: dict[str, WhatsmeowClient] = {}
        self.shards = ShardMap(sessions_per_worker)
        self.worker_max_mb = worker_max_mb
        # A worker that hears nothing from us this long drops its sessions' connections
        # (children.py, Fencing); None: never.
        self.fence_after_s = fence_after_s
        self._stopping: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        self.watch_s = _WATCH_S
        # Leaked device stores a worker may hold (see `after_connect`): PostgreSQL
        # connections are scarcer than file handles.
        self.recycle_after = 10 if store.dsn else 400
        # whatsmeow shows a first QR for 60 s and each next one for 20 s: a code still up
        # this long after it came was not scanned.
        self.qr_timeout_s = 75.0
        # An inbound download that has not ended by then is given up (`mediaError`).
        self.download_timeout_s = 300.0
        self.transfers = TransferDirectory(store.directory / "transfer")

    def client(self, context: SessionContext) -> EngineClient:
        client = WhatsmeowClient(self, context)
        self._clients[context.session_id] = client
        return client

    def client_of(self, session_id: str) -> WhatsmeowClient | None:
        return self._clients.get(session_id)

    def release(self, client: WhatsmeowClient) -> None:
        if self._clients.get(client.session_id) is client:
            del self._clients[client.session_id]

    async def shard_worker(self, shard: Shard) -> ChildProcess:
        """The shard's running worker, started when it has none (or the last one died)."""
        async with shard.starting:
            if shard.process is None or not shard.process.alive:
                worker = WorkerProcess(
                    self._on_frame, lambda: self._on_exit(shard), fence_after_s=self.fence_after_s
                )
                await worker.start(
                    self._log_level,
                    self._max_media_bytes,
                    self.qr_timeout_s,
                    self.transfers.path,
                    self.download_timeout_s,
                    shard.number,
                    self._max_image_dimension,
                )
                shard.process, shard.sealed = worker, False
                if self._watch is None or self._watch.done():
                    self._watch = asyncio.create_task(self._watch_workers())
            return shard.process

    async def worker(self) -> ChildProcess:
        """The first shard's worker (started when there is none)."""
        if not self.shards.shards:
            self.shards.shards.append(Shard(0))
        return await self.shard_worker(self.shards.shards[0])

    @property
    def worker_pid(self) -> int | None:
        """The first shard's worker, when it runs."""
        return self.shards.shards[0].pid if self.shards.shards else None

    def worker_pid_of(self, session_id: str) -> int | None:
        shard = self.shards.of(session_id)
        return shard.pid if shard is not None else None

    async def request(self, op: str, session: str, **args: Any) -> Any:
        shard = self.shards.of(session)
        worker = shard.process if shard is not None else None
        if worker is None or not worker.alive:
            raise SendFailed("the session's whatsmeow worker is not running")
        try:
            return await worker.request(op, session=session, **args)
        except OutcomeUnknown as exc:
            if op == "send":
                # neonize cannot send under our id: a resend would be a second message.
                raise SendFailed(str(exc), retryable=False, code=SEND_OUTCOME_UNKNOWN) from exc
            raise SendFailed(str(exc)) from exc
        except WorkerGone as exc:  # never reached the worker: nothing was done
            raise SendFailed(str(exc)) from exc

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        client = self._clients.get(frame.get("session", ""))
        if client is not None:
            await client.on_frame(frame)

    async def _on_exit(self, shard: Shard) -> None:
        reason = shard.exit_reason or "the whatsmeow worker exited"
        shard.exit_reason = None
        for session_id in list(shard.sessions):
            client = self._clients.get(session_id)
            if client is not None:
                await client.on_worker_exit(reason)

    async def connect(self, session_id: str, **args: Any) -> None:
        """Start (or keep) the session's connection on its shard's worker; a shard that
        takes no new attempts hands the session to another one, restarted alone."""
        for _ in range(2):
            shard = self.shards.place(session_id)
            worker = await self.shard_worker(shard)
            reply = await worker.request("connect", session=session_id, sealed=shard.sealed, **args)
            if not reply.pop("moved", False):
                self.after_connect(shard, WorkerLoad(**reply))
                return
            log.info("whatsmeow_session_moved", session=session_id, shard=shard.number)
            with contextlib.suppress(WorkerGone, EngineRefused, SendFailed):
                await worker.request("forget", session=session_id)
            self.shards.drop(session_id)
        raise SendFailed("no whatsmeow worker takes the session's connection now")

    def after_connect(self, shard: Shard, load: WorkerLoad) -> None:
        """Bound what neonize leaks without disconnecting connected sessions.

        neonize opens a new device store (a database connection pool, or SQLite file
        handles) for every connection attempt and never closes the old one: a session
        retrying through a network outage leaks one PostgreSQL connection per attempt.
        Only ending the process frees them. Once a worker holds `recycle_after` of
        them it is recycled at once if none of its sessions is connected (nothing is
        lost); otherwise it is sealed: it takes no new attempt, a session that needs one
        is restarted alone on another shard, and the worker is recycled when nothing on
        it is connected any more (`_watch_workers`).
        """
        if load.leaked < self.recycle_after or shard.process is None:
            return
        if not load.live:
            self._recycle(shard, "the whatsmeow worker was recycled (neonize leaks per attempt)")
        elif not shard.sealed:
            shard.sealed = True
            log.warning(
                "whatsmeow_worker_sealed", shard=shard.number, leaked=load.leaked, live=load.live
            )

    def _recycle(self, shard: Shard, reason: str) -> None:
        """End the shard's process; its sessions reconnect to a fresh one."""
        worker = shard.process
        if worker is None or not worker.alive or shard.exit_reason is not None:
            return
        log.warning("whatsmeow_worker_recycled", shard=shard.number, pid=worker.pid, why=reason)
        shard.exit_reason = reason
        task = asyncio.create_task(worker.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _watch_workers(self) -> None:
        """Recycle a worker over `WHATSMEOW_WORKER_MAX_MB`, or a sealed one whose sessions
        are no longer connected."""
        while True:
            await asyncio.sleep(self.watch_s)
            for shard in list(self.shards.shards):
                with contextlib.suppress(Exception):
                    await self._look_at(shard)

    async def _look_at(self, shard: Shard) -> None:
        worker = shard.process
        if worker is None or not worker.alive or worker.pid is None:
            return
        rss = rss_mb(worker.pid)
        if self.worker_max_mb is not None and rss is not None and rss > self.worker_max_mb:
            self._recycle(
                shard,
                f"the whatsmeow worker was recycled ({rss:.0f} MB, over "
                f"WHATSMEOW_WORKER_MAX_MB={self.worker_max_mb})",
            )
            return
        if shard.sealed:
            reply = await worker.request("ping", timeout=5)
            load = WorkerLoad(reply["attempts"], reply["sessions"], reply["live"])
            if not load.live:
                self._recycle(
                    shard, "the whatsmeow worker was recycled (neonize leaks per attempt)"
                )

    async def unavailable(self) -> str | None:
        return (
            None if importlib.util.find_spec("neonize") is not None else "neonize is not installed"
        )

    async def check(self) -> None:
        if importlib.util.find_spec("neonize") is None:
            raise RuntimeError("neonize is not installed")
        for shard in self.shards.shards:
            worker = shard.process
            if worker is not None and worker.alive:
                await worker.request("ping", timeout=5)

    async def forget(self, session_id: str, auth: dict[str, Any] | None) -> None:
        with contextlib.suppress(EngineRefused, SendFailed):  # no worker: nothing to drop
            await self.request("forget", session=session_id)
        self.shards.drop(session_id)
        auth = auth or {}
        jid = auth.get("jid")
        if jid is None and (noise_key := pairing_noise_key(auth)) is not None:
            # Stored, perhaps, and never told of: it is no other session's to keep.
            jid = await self.store.unrecorded_device(session_id, noise_key)
        await self.store.remove(session_id, jid)

    async def close(self) -> None:
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


class WhatsmeowClient:
    def __init__(self, engine: WhatsmeowEngine, context: SessionContext) -> None:
        self._engine = engine
        self._ctx = context
        self.session_id = context.session_id
        self._connected_once = False
        # A device this client saw linked or found in the store: no need to look again.
        self._verified: str | None = None
        # A device taken from the store without a link we recorded (`_adopted`), until
        # its connection confirms it.
        self._adopted_jid: str | None = None
        # The noise key of the last QR code recorded (`_note_pairing`), and one a
        # connect found no device for (`_adopted`).
        self._pairing_key: bytes | None = None
        self._unmatched_key: bytes | None = None

    async def _call(self, op: str, **args: Any) -> Any:
        return await self._engine.request(op, session=self.session_id, **args)

    # Frames from the worker, in order.

    async def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("kind")
        if kind == "linked":
            self._verified = frame["jid"]
            self._adopted_jid = None
            await self._ctx.auth.save({"jid": frame["jid"]})
        elif kind == "event":
            # A LoggedOut's device is forgotten by the runtime (`Engine.forget`).
            event = decode_event(frame)
            if isinstance(event, QrUpdated):
                await self._note_pairing(event.qr)
            if isinstance(event, LoggedOut) and self._adopted_jid is not None:
                # Not the phone's doing, most likely: whatsmeow stores a device before
                # WhatsApp has confirmed the pairing, so an adopted one may never have
                # been linked at all.
                event = LoggedOut(
                    f"{event.reason} (the device {self._adopted_jid} was found in "
                    "whatsmeow's store without a completed link, and WhatsApp refused it; "
                    "start the session again to link it with a new QR)"
                )
            await self._ctx.emit(event)

    async def _note_pairing(self, code: str) -> None:
        """On PostgreSQL, record the noise key of the device this QR code would link,
        before the code is shown: if a process ends between whatsmeow's storing of the
        device and its telling us of the link, the next start finds the device by it
        (`_adopted`). Once per device (every connect of an unlinked session makes a new
        one; its codes rotate with the same keys)."""
        key = qr_noise_key(code)
        if (
            key is None
            or key == self._pairing_key
            or self._engine.store.dsn is None
            or self._verified is not None  # linked: the row names its device
        ):
            return
        try:
            await self._ctx.auth.save(pairing_record(key))
        except Exception:
            # The code is shown all the same: only this narrow recovery is lost.
            log.warning("whatsmeow_pairing_key_not_saved", session_id=self.session_id)
            return
        self._pairing_key = key

    async def on_worker_exit(self, reason: str) -> None:
        if self._connected_once:
            await self._ctx.emit(Disconnected(reason))

    # Connection.

    async def connect(self) -> None:
        auth = await self._ctx.auth.load() or {}
        jid = auth.get("jid") or await self._adopted(auth)
        if (
            jid
            and jid != self._verified
            and not await self._engine.store.has_device(self.session_id, jid)
        ):
            await self._ctx.emit(
                LoggedOut(
                    f"DEVICE_MISSING: the linked device {jid} is no longer in whatsmeow's "
                    "store; link the session again"
                )
            )
            return
        self._verified = jid
        self._connected_once = True
        await self._engine.connect(
            self.session_id,
            location=self._engine.store.location(self.session_id),
            jid=jid,
            proxy=self._ctx.config.get("proxy"),
            online=bool(self._ctx.config.get("markOnline")),
        )

    async def _adopted(self, auth: dict[str, Any]) -> str | None:
        """A device whatsmeow stored for this session whose link never reached our auth
        row: whatsmeow saves the device before it tells of the link, so a worker or an
        API process that ended between the two left a linked device we did not know of,
        and the next start linked a new one (a new scan). The session's own file holding
        exactly one device (SQLite), or the device of the noise key its last QR code
        showed (PostgreSQL's shared store), is that device: it is resumed and recorded."""
        noise_key = pairing_noise_key(auth)
        if noise_key is not None and noise_key == self._unmatched_key:
            return None  # looked for already: a connect of this client found none
        jid = await self._engine.store.unrecorded_device(self.session_id, noise_key)
        self._pairing_key = None
        if jid is None:
            # That QR's device was never stored: this connect makes a new one, whose
            # first code replaces the key. The row is not cleared here: a link told of
            # meanwhile (the worker's frames go on beside a connect) would go with it.
            self._unmatched_key = noise_key
            return None
        log.warning("whatsmeow_device_adopted", session_id=self.session_id, jid=jid)
        await self._ctx.auth.save({"jid": jid})
        # Its phone number comes with the connection (the worker tells of the link once
        # connected); until then the device is on trial (see `on_frame`).
        self._verified = self._adopted_jid = jid
        return jid

    async def disconnect(self) -> None:
        self._connected_once = False
        with contextlib.suppress(SendFailed, EngineRefused):
            await self._call("close")
        self._engine.release(self)

    async def logout(self) -> None:
        with contextlib.suppress(SendFailed, EngineRefused):
            await self._call("logout")
        await self.disconnect()
        await self._forget_device()

    async def _forget_device(self) -> None:
        await self._engine.forget(self.session_id, await self._ctx.auth.load())
        await self._ctx.auth.clear()

    async def request_pairing_code(self, phone_number: str) -> str:
        try:
            code: str = await self._call("pair", phone=phone_number)
        except (SendFailed, EngineRefused) as exc:
            raise PairingNotAvailable(str(exc)) from exc
        return code

    # Messages.

    async def send(self, message: OutgoingMessage) -> str | None:
        payload = outgoing_wire(message)
        if not isinstance(message.content, Media):
            engine_id: str = await self._call("send", message=payload)
            return engine_id if engine_id != message.id else None
        if self._ctx.media is None:
            raise SendFailed("no media storage for the engine", retryable=False)
        # The file crosses to the worker by its path; gone once the worker answered.
        path = await self._engine.transfers.write(self._ctx.media.stream(message.content.media.key))
        try:
            engine_id = await self._call("send", message=payload, media_path=str(path))
        finally:
            path.unlink(missing_ok=True)
        return engine_id if engine_id != message.id else None

    async def stored(self, message_ids: list[str]) -> None:
        # whatsmeow acknowledges a message to WhatsApp itself once its handler ran.
        return None

    async def revoke(self, chat_id: str, message_id: str) -> None:
        await self._call("revoke", chat=chat_id, id=message_id)
        # WhatsApp does not echo our own revoke back to this device.
        await self._ctx.emit(MessageRevoked(message_id, chat_id, None))

    async def mark_read(
        self, chat_id: str, message_ids: list[str], senders: dict[str, str] | None = None
    ) -> None:
        await self._call("mark_read", chat=chat_id, ids=message_ids, senders=senders or {})

    async def set_presence(self, chat_id: str, state: str) -> None:
        await self._call("presence", chat=chat_id, state=state)

    async def check_number(self, phone: str) -> str | None:
        found: str | None = await self._call("check", phone=phone)
        return found

    async def subscribe_presence(self, chat_id: str) -> None:
        await self._call("subscribe_presence", chat=chat_id)

    async def profile_picture(self, chat_id: str) -> str | None:
        url: str | None = await self._call("picture", chat=chat_id)
        return url

    # Groups.

    async def groups(self) -> list[GroupInfo]:
        return [decode_group(g) for g in await self._call("groups")]

    async def group_info(self, group_id: str) -> GroupInfo:
        return decode_group(await self._call("group_info", group=group_id))

    async def create_group(self, subject: str, participants: list[str]) -> GroupInfo:
        return decode_group(
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
            group=group_id,
            subject=subject,
            description=description,
            settings=settings,
        )
        return decode_group(data)

    async def change_participants(
        self, group_id: str, action: str, participants: list[str]
    ) -> list[ParticipantResult]:
        results = await self._call(
            "participants", group=group_id, action=action, participants=participants
        )
        return [ParticipantResult(r["id"], r["status"]) for r in results]

    async def invite_code(self, group_id: str) -> str:
        code: str = await self._call("invite", group=group_id)
        return code

    async def leave_group(self, group_id: str) -> None:
        await self._call("leave", group=group_id)

    # Tests and operators.

    async def inject(self, event_type: str, data: bytes) -> None:
        """Feed a serialized neonize event to this session's worker path (tests)."""
        await self._call("inject", type=event_type, data=data)

    async def describe(self) -> dict[str, Any]:
        """What the worker's client for this session was told: store, device, proxy."""
        described: dict[str, Any] = await self._call("describe")
        return described
