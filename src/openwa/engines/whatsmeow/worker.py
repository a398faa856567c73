"""The whatsmeow worker process: many neonize clients, one per session.

Why a process of its own: neonize blocks a thread per client for the client's whole life,
calls back from Go-owned threads, keeps global Go state, prints to stdout, and its Go
side panics on some misuse. Here all of that stays away from the API's event loop, and a
crash costs a reconnect, not the server.

Run by the engine adapter as `python -m openwa.engines.whatsmeow.worker --fd N`; frames go
both ways on that socket (see `protocol`): requests with an id, replies, and events.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from openwa.engines.base import EngineEvent
from openwa.engines.whatsmeow.commands import CommandError, run_command
from openwa.engines.whatsmeow.go_maps import GoMapsLock
from openwa.engines.whatsmeow.protocol import encode_event, pack, read_frame
from openwa.engines.whatsmeow.worker_session import NotSettled, WorkerSession

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
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.max_media_bytes = max_media_bytes
        self.qr_timeout_s = qr_timeout_s
        self.transfer_dir = transfer_dir
        self.download_timeout_s = download_timeout_s
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
        while True:
            frame = await read_frame(self.reader)
            if frame is None or frame.get("op") == "shutdown":
                break
            task = asyncio.create_task(self._answer(frame))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        for session in list(self.sessions.values()):
            session.stop()

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
    )
    await worker.run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--max-media-bytes", type=int, default=64 * 1024 * 1024)
    parser.add_argument("--qr-timeout-s", type=float, default=75.0)
    parser.add_argument("--transfer-dir", required=True)
    parser.add_argument("--download-timeout-s", type=float, default=300.0)
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
