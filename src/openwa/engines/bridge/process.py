"""One Node.js bridge process: JSON lines on an inherited socket (docs/bridge.md)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import orjson
import structlog

from openwa.engines.base import (
    ENGINE_ERROR,
    EngineRefused,
    PairingNotAvailable,
    SendFailed,
)
from openwa.engines.children import ChildProcess
from openwa.kit import wire_json

log = structlog.get_logger(__name__)

PROTOCOL_VERSION = 1
MAX_LINE = 64 * 1024 * 1024


class BridgeProcess(ChildProcess):
    """`node bridge.js --engine <name>` for one shard of one engine's sessions."""

    event_prefix = "bridge"
    read_limit = MAX_LINE
    own_group = True

    def __init__(self, engine: str, *args: Any, fence_after_s: float | None = None) -> None:
        super().__init__(*args, fence_after_s=fence_after_s)
        self.engine = engine
        self.label = f"{engine} bridge"
        self.hello: dict[str, Any] | None = None

    async def start(
        self, node: str, entry: Path, transfer_dir: Path, shard: int, log_level: str
    ) -> None:
        env = {**os.environ, "OPENWA_BRIDGE_LOG_LEVEL": log_level}
        await self.spawn(
            [
                node,
                str(entry),
                "--engine",
                self.engine,
                "--transfer-dir",
                str(transfer_dir),
            ],
            env=env,
        )
        log.info("bridge_started", engine=self.engine, pid=self.pid, shard=shard)

    def encode(self, frame: dict[str, Any]) -> bytes:
        return orjson.dumps(frame) + b"\n"

    async def decode(self, reader: asyncio.StreamReader) -> dict[str, Any] | None:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return None
            except asyncio.LimitOverrunError:
                raise ValueError("a bridge frame is over the line limit") from None
            except ConnectionError:
                return None
            try:
                # Node writes half an emoji in a string (a lone surrogate, which
                # JavaScript strings may hold) as an escape orjson refuses: such a frame
                # (an inbound message) is read all the same, with U+FFFD.
                frame = wire_json.loads(line)
            except ValueError:
                # One bad line is skipped: the next newline puts the stream in step again.
                log.warning("bridge_frame_unreadable", engine=self.engine, size=len(line))
                continue
            if not isinstance(frame, dict) or frame.get("v") != PROTOCOL_VERSION:
                log.warning("bridge_frame_skipped", engine=self.engine, version=_version(frame))
                continue
            if frame.get("kind") == "hello":
                self.hello = frame
                continue
            return frame

    def command(
        self, request_id: int, op: str, args: dict[str, Any], deadline: float
    ) -> dict[str, Any]:
        session = args.pop("session", None)
        frame: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "id": request_id,
            "op": op,
            "args": args,
            "deadline": deadline,
        }
        if session is not None:
            frame["session"] = session
        return frame

    def heartbeat(self) -> dict[str, Any]:
        return {"v": PROTOCOL_VERSION, "kind": "heartbeat"}

    def error(self, op: str, error: dict[str, Any]) -> Exception:
        kind = error.get("kind")
        message = str(error.get("message") or f"{self.engine} error")
        if kind == "pairing":
            return PairingNotAvailable(message)
        if kind in ("not_ready", "expired", "no_session"):
            return SendFailed(message, retryable=True)
        if kind == "send_failed":
            return SendFailed(
                message,
                retryable=bool(error.get("retryable", False)),
                code=error.get("code") or ENGINE_ERROR,
            )
        if op == "send":
            return SendFailed(message, retryable=False)
        return EngineRefused(message)


def _version(frame: Any) -> Any:
    return frame.get("v") if isinstance(frame, dict) else None
