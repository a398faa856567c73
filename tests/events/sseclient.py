"""A small Server-Sent Events reader over an httpx stream (not a test module)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson


@dataclass
class Frame:
    id: str | None = None
    event: str | None = None
    data: str = ""
    retry: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.data)
        return value


def _frames(lines: Iterator[str]) -> Iterator[Frame]:
    frame = Frame()
    data: list[str] = []
    touched = False
    for line in lines:
        if line == "":
            if touched:
                frame.data = "\n".join(data)
                yield frame
            frame, data, touched = Frame(), [], False
            continue
        touched = True
        if line.startswith(":"):
            frame.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            frame.id = value
        elif name == "event":
            frame.event = value
        elif name == "data":
            data.append(value)
        elif name == "retry":
            frame.retry = value


class SseStream:
    """`GET /api/events/stream` on a real server; frames as they come."""

    def __init__(
        self,
        base_url: str,
        key: str,
        params: dict[str, Any] | None = None,
        last_event_id: str | None = None,
    ) -> None:
        headers = {"X-API-Key": key, "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10.0, read=20.0))
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(self._client)
        self.response = self._stack.enter_context(
            self._client.stream("GET", "/api/events/stream", params=params, headers=headers)
        )
        self._frames: Iterator[Frame] | None = None

    def frames(self) -> Iterator[Frame]:
        if self._frames is None:
            self._frames = _frames(self.response.iter_lines())
        return self._frames

    def events_until(
        self, done: Callable[[list[Frame]], bool], timeout: float, what: str
    ) -> list[Frame]:
        """Event frames (not the retry or heartbeat ones) until `done(frames so far)`."""
        got: list[Frame] = []
        deadline = time.monotonic() + timeout
        for frame in self.frames():
            if frame.event is not None or frame.data:
                got.append(frame)
            if done(got):
                return got
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"timed out waiting for {what}; got {[f.id for f in got]}")

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> SseStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
