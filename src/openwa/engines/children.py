"""Engine processes the API process supervises (whatsmeow workers, Node.js bridges): a
child with one end of a socket pair as an inherited descriptor, commands with request
ids, replies matched to them, everything else handed on as frames.

Never the child's stdout: the libraries inside print to it on their own. When a child
exits, every command still waiting fails with `OutcomeUnknown` (it may have run), and
the owner's exit handler tells the child's sessions.

Fencing: given `fence_after_s`, the child is started with `--fence-after-s` and sent a
heartbeat frame every third of it. A child that hears nothing from us for that long (we
are paused, hung, or cut off without its socket closing) drops its WhatsApp connections
by itself, keeping their auth, and reports each session disconnected: another instance
may own those sessions by then (leases), and two clients of one device fight. A child
whose socket closes (we died) exits, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog

from openwa.config import Settings

log = structlog.get_logger(__name__)

FrameHandler = Callable[[dict[str, Any]], Awaitable[None]]
REQUEST_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 10.0


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without OpenWA's own settings: an engine's process (Node, Chromium, the Go
    client) gets what it needs from its arguments and frames, and with the whole
    environment it held API_KEY, ENCRYPTION_KEY, DATABASE_URL, the S3 secret and
    CLUSTER_SECRET, for any library of its to print or send."""
    ours = {name.upper() for name in Settings.model_fields}
    return {name: value for name, value in env.items() if name.upper() not in ours}


class WorkerGone(Exception):
    """The child process exited (or never started) while a command waited."""


class OutcomeUnknown(WorkerGone):
    """The command reached the child, which then exited or did not answer in time: it
    may have run, in part or in full (a send may have gone out)."""


class ChildProcess:
    """One engine child process and the socket pair to it. Subclasses say how to start
    it (`argv`), how frames look on the wire (`encode`, `decode`, `command`) and what a
    reply's error means (`error`)."""

    label = "engine process"  # in logs and error messages
    event_prefix = "engine_process"  # structlog event names
    read_limit = 2**20  # the stream reader's buffer: the largest frame a line-reader takes
    # Run the child in a process group of its own and end the whole group when it exits:
    # what it started (whatsapp-web.js' browsers) must not outlive it, even a kill -9.
    own_group = False

    def __init__(
        self,
        on_frame: FrameHandler,
        on_exit: Callable[[], Awaitable[None]],
        *,
        fence_after_s: float | None = None,
    ) -> None:
        self._on_frame = on_frame
        self._on_exit = on_exit
        # None: no heartbeats, and the child never fences itself.
        self.fence_after_s = fence_after_s
        self._heartbeat: asyncio.Task[None] | None = None
        # Tests only: True sends no heartbeats, as if this process were paused, while
        # everything else goes on (SIGSTOP would stop the test too).
        self.heartbeats_held = False
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self.alive = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    # What subclasses define.

    def encode(self, frame: dict[str, Any]) -> bytes:
        raise NotImplementedError

    async def decode(self, reader: asyncio.StreamReader) -> dict[str, Any] | None:
        """The next frame, or None when the other side has gone."""
        raise NotImplementedError

    def command(
        self, request_id: int, op: str, args: dict[str, Any], deadline: float
    ) -> dict[str, Any]:
        # The child drops a command it only reaches after `deadline` (nothing was done,
        # so a retry is safe); one that runs over it is what may still be in doubt.
        return {"id": request_id, "op": op, "args": args, "deadline": deadline}

    def error(self, op: str, error: dict[str, Any]) -> Exception:
        raise NotImplementedError

    def heartbeat(self) -> dict[str, Any]:
        """The frame that tells the child we are still here (no id, no reply)."""
        return {"kind": "heartbeat"}

    # The process.

    async def spawn(
        self, argv: Sequence[str], fd_flag: str = "--fd", env: dict[str, str] | None = None
    ) -> None:
        """Start `argv` plus `fd_flag <n>`, `n` being the child's end of the pair (and
        `--fence-after-s` when fencing)."""
        if self.fence_after_s is not None:
            argv = [*argv, "--fence-after-s", str(self.fence_after_s)]
        env = child_environment(os.environ if env is None else env)
        ours, theirs = socket.socketpair()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *argv,
                fd_flag,
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                # What the libraries print goes to our stderr, a log.
                stdout=sys.stderr.fileno(),
                env=env,
                start_new_session=self.own_group,
            )
        finally:
            theirs.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=ours, limit=self.read_limit)
        self.alive = True
        self._reader_task = asyncio.create_task(self._read(reader))
        if self.fence_after_s is not None:
            self._heartbeat = asyncio.create_task(self._beat(self.fence_after_s / 3))

    async def _beat(self, every_s: float) -> None:
        """A heartbeat every `every_s` until the child exits or is stopped. From a task
        of this loop, so that a blocked loop, like a paused process, sends none: that is
        what the child must notice."""
        while self.alive:
            if not self.heartbeats_held:
                try:
                    await self.send_frame(self.heartbeat())
                except (WorkerGone, ConnectionError, OSError):
                    return  # the reader sees the child go and reports it
            await asyncio.sleep(every_s)

    def _stop_heartbeats(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            await self._dispatch(reader)
        except Exception:
            # A frame we cannot read leaves the stream out of step: end the child, and
            # its sessions reconnect to a new one.
            log.exception(f"{self.event_prefix}_unreadable")
        finally:
            self.alive = False
            self._stop_heartbeats()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(OutcomeUnknown(f"the {self.label} exited"))
            self._pending.clear()
            code = None
            if self._process is not None:
                if self._process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        self._process.kill()
                code = await self._process.wait()
                self._end_group()
            log.warning(f"{self.event_prefix}_exited", code=code)
            await self._on_exit()

    async def _dispatch(self, reader: asyncio.StreamReader) -> None:
        while (frame := await self.decode(reader)) is not None:
            if frame.get("kind") == "reply":
                future = self._pending.pop(frame.get("id", 0), None)
                if future is not None and not future.done():
                    future.set_result(frame)
                continue
            try:
                await self._on_frame(frame)
            except Exception:
                log.exception(f"{self.event_prefix}_frame_failed", kind=frame.get("kind"))

    async def send_frame(self, frame: dict[str, Any]) -> None:
        if self._writer is None:
            raise WorkerGone(f"the {self.label} is not running")
        async with self._write_lock:
            self._writer.write(self.encode(frame))
            await self._writer.drain()

    async def request(self, op: str, timeout: float = REQUEST_TIMEOUT_S, **args: Any) -> Any:
        if not self.alive or self._writer is None:
            raise WorkerGone(f"the {self.label} is not running")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self.send_frame(self.command(request_id, op, args, time.time() + timeout))
            reply: dict[str, Any] = await asyncio.wait_for(future, timeout)
        except (ConnectionError, OSError) as exc:
            # Some of the frame may have gone: whether the child read it is unknown.
            raise OutcomeUnknown(f"the {self.label} is unreachable: {exc}") from exc
        except TimeoutError as exc:
            raise OutcomeUnknown(
                f"the {self.label} did not answer {op!r} in {timeout:.0f} s"
            ) from exc
        finally:
            self._pending.pop(request_id, None)
        if "error" in reply:
            raise self.error(op, reply["error"])
        return reply.get("result")

    def _end_group(self) -> None:
        if self.own_group and self._process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)

    async def stop(self) -> None:
        self._stop_heartbeats()
        if self._writer is not None and self.alive:
            with contextlib.suppress(Exception):
                await self.send_frame(
                    self.command(next(self._ids), "shutdown", {}, time.time() + 5)
                )
        if self._process is not None and self._process.returncode is None:
            try:
                await asyncio.wait_for(self._process.wait(), _STOP_TIMEOUT_S)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._end_group()
        if self._reader_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task
        if self._writer is not None:
            self._writer.close()
