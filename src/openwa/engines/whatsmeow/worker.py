"""The whatsmeow worker process: many neonize clients, one per session.

Why a process of its own: neonize blocks a thread per client for the client's whole life,
calls back from Go-owned threads, keeps global Go state, prints to stdout, and its Go
side panics on some misuse. Here all of that stays away from the API's event loop, and a
crash costs a reconnect, not the server.

Run by the engine adapter as `python -m openwa.engines.whatsmeow.worker --fd N`; frames go
both ways on that socket (see `protocol`): requests with an id, replies, and events, and
the API process' heartbeats (`{"kind": "heartbeat"}`) when it runs us with
`--fence-after-s`: hearing nothing for that long, the worker fences itself (`fence`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from openwa.engines.base import Disconnected, EngineEvent
from openwa.engines.whatsmeow.commands import CommandError, run_command
from openwa.engines.whatsmeow.go_maps import GoMapsLock
from openwa.engines.whatsmeow.protocol import encode_event, pack, read_frame
from openwa.engines.whatsmeow.worker_session import Downloads, NotSettled, WorkerSession

log = logging.getLogger("openwa.whatsmeow.worker")


class Worker:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_media_bytes: int,
        qr_timeout_s: float,
        *,
        transfer_dir: Path,
        download_timeout_s: float,
        fence_after_s: float | None = None,
        max_image_dimension: int = 4096,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.max_media_bytes = max_media_bytes
        # MEDIA_MAX_IMAGE_DIMENSION: a picture over it a side is sent without a thumbnail.
        self.max_image_dimension = max_image_dimension
        self.qr_timeout_s = qr_timeout_s
        self.transfer_dir = transfer_dir
        self.download_timeout_s = download_timeout_s
        self.downloads = Downloads()
        self.sessions: dict[str, WorkerSession] = {}
        self._write_lock = asyncio.Lock()
        self.gone = False
        # Connection attempts started (each leaves a device store open in neonize).
        self.attempts = 0
        # neonize's Go maps are one per process: every session's calls share this lock.
        self.go_maps = GoMapsLock()
        # Commands have threads of their own: a burst of slow sends must not hold up
        # the downloads and joins that use the loop's default pool.
        self.commands = ThreadPoolExecutor(max_workers=32, thread_name_prefix="command")
        self.fence_after_s = fence_after_s
        # When the API process was last heard from (any frame counts), monotonic.
        self.heard = time.monotonic()

    async def send_frame(self, frame: dict[str, Any]) -> None:
        if self.gone:
            return
        async with self._write_lock:
            try:
                self.writer.write(pack(frame))
                await self.writer.drain()
            except (ConnectionError, OSError):
                # The API process is gone; reading will see EOF and end this one.
                self.gone = True

    async def emit(self, session_id: str, event: EngineEvent) -> None:
        await self.send_frame({"kind": "event", "session": session_id, **encode_event(event)})

    async def run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        watchdog = None
        if self.fence_after_s is not None:
            watchdog = asyncio.create_task(self._fence_when_silent(self.fence_after_s))
        while True:
            frame = await read_frame(self.reader)
            if frame is None or frame.get("op") == "shutdown":
                break
            self.heard = time.monotonic()
            if frame.get("kind") == "heartbeat":
                continue
            task = asyncio.create_task(self._answer(frame))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if watchdog is not None:
            watchdog.cancel()
        for session in list(self.sessions.values()):
            session.stop()

    async def _fence_when_silent(self, after_s: float) -> None:
        """Fence whenever the API process has been silent for `after_s`. Fencing again
        while the silence lasts finds nothing to do: only a `connect`, which is hearing
        from it, makes a session want its connection again."""
        while True:
            silent = time.monotonic() - self.heard
            if silent < after_s:
                await asyncio.sleep(after_s - silent)
                continue
            await self.fence(silent)
            await asyncio.sleep(after_s / 3)

    async def fence(self, silent_s: float) -> None:
        """Drop every connection that is up or being made, as a `close` does (the device
        stays in whatsmeow's store), then report each session `Disconnected`.

        Our API process stopped answering: it may be paused or cut off while another
        instance took its sessions over, and two clients of one device would take the
        connection from each other. A stopped session does not reconnect by itself (Go's
        client is stopped); the API process' next `connect` starts it again. All are
        stopped before the first report is written: writing may wait on a paused reader.
        """
        fenced = [s for s in self.sessions.values() if s.active]
        for session in fenced:
            session.stop()
        if fenced:
            log.warning(
                "fenced %d sessions: nothing from the API process for %.1f s",
                len(fenced),
                silent_s,
            )
        reason = f"fenced: the API process stopped answering (nothing for {silent_s:.1f} s)"
        for session in fenced:
            await self.emit(session.session_id, Disconnected(reason))

    async def _answer(self, frame: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"kind": "reply", "id": frame["id"]}
        try:
            args = dict(frame.get("args") or {})
            args["_deadline"] = frame.get("deadline")
            reply["result"] = await self.handle(frame["op"], args)
        except CommandError as exc:
            reply["error"] = {
                "kind": exc.kind,
                "message": str(exc),
                "retryable": exc.retryable,
                "code": exc.code,
            }
        except NotSettled as exc:
            reply["error"] = {"kind": "not_ready", "message": str(exc)}
        except Exception as exc:
            reply["error"] = {"kind": "refused", "message": str(exc) or type(exc).__name__}
        await self.send_frame(reply)

    def _load(self) -> dict[str, int]:
        """What the engine's recycling reads: attempts (each leaves a device store open),
        sessions, and those whatsmeow reports connected."""
        live = sum(1 for s in self.sessions.values() if s.go_connected)
        return {"attempts": self.attempts, "sessions": len(self.sessions), "live": live}

    def _session(self, args: dict[str, Any]) -> WorkerSession:
        session = self.sessions.get(args["session"])
        if session is None:
            raise CommandError("not_ready", "the session is not running in the worker")
        return session

    async def handle(self, op: str, args: dict[str, Any]) -> Any:
        if op == "ping":
            return {"pid": os.getpid(), **self._load()}
        if op == "connect":
            session = self.sessions.get(args["session"])
            if args.get("sealed") and (session is None or not session.keeps_connection()):
                # This worker takes no new attempts (it holds enough of neonize's leaks):
                # the engine restarts the session alone on another worker.
                return {"moved": True, **self._load()}
            if session is None:
                session = self.sessions[args["session"]] = WorkerSession(self, args["session"])
            session.online = bool(args.get("online"))
            if await session.connect(args["location"], args.get("jid"), args.get("proxy")):
                self.attempts += 1
            return self._load()
        if op == "close":
            session = self.sessions.get(args["session"])
            if session is not None:
                session.stop()  # also after a QR timeout, which left Go's client up
            return None
        if op == "forget":
            session = self.sessions.pop(args["session"], None)
            if session is not None:
                await session.close()
            return None
        session = self._session(args)
        if op == "inject":
            return self._inject(session, args)
        if op == "describe":
            return session.describe()
        deadline = float(args.pop("_deadline", 0) or 0)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.commands, run_command, session, op, args, deadline)

    @staticmethod
    def _inject(session: WorkerSession, args: dict[str, Any]) -> None:
        """Hand a serialized neonize event to the session as if Go had sent it: how the
        tests drive the worker's whole path without WhatsApp."""
        from neonize import events as ev

        data = base64.b64decode(args["data"])
        if args["type"] == "qr":  # the QR callback passes the code itself
            session.push("qr", data.decode())
            return
        event_type = getattr(ev, args["type"])
        session.push(args["type"], event_type.FromString(data))


async def _serve(args: argparse.Namespace) -> None:
    sock = socket.socket(fileno=args.fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
    worker = Worker(
        reader,
        writer,
        args.max_media_bytes,
        args.qr_timeout_s,
        transfer_dir=Path(args.transfer_dir),
        download_timeout_s=args.download_timeout_s,
        fence_after_s=args.fence_after_s,
        max_image_dimension=args.max_image_dimension,
    )
    await worker.run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--max-media-bytes", type=int, default=64 * 1024 * 1024)
    parser.add_argument("--max-image-dimension", type=int, default=4096)
    parser.add_argument("--qr-timeout-s", type=float, default=75.0)
    parser.add_argument("--transfer-dir", required=True)
    parser.add_argument("--download-timeout-s", type=float, default=300.0)
    # Unset: the worker never fences itself (nothing sends it heartbeats).
    parser.add_argument("--fence-after-s", type=float, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="whatsmeow-worker %(levelname)s %(name)s: %(message)s",
    )
    # neonize logs whatsmeow's own lines through the `whatsmeow` logger.
    logging.getLogger("whatsmeow").setLevel(args.log_level.upper())
    try:
        asyncio.run(_serve(args))
    except Exception:
        log.exception("the worker failed")
    finally:
        # neonize's own connect threads are not daemons and may sit in a dial for a
        # minute; the process is done, so it leaves without joining them.
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
