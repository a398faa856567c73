"""What it costs to hand a media file between the API process and the whatsmeow worker.

Before: the file rode inside the JSON frame as base64 (`{"media": {"data": "..."}}`),
so the side reading the frame parsed and decoded it on its event loop. Now: the file is
written to the engine's transfer directory and the frame names its path. Measured here:
packing a frame (`protocol.pack`) and reading it back (`orjson.loads`, and for the
former format the base64 decode), for an inbound media event of `--size-mb` MiB. The
file's own write and read are shown apart: the worker writes an inbound file on a
thread of its own and our storage reads it off the loop (obstore); an outbound file is
written by the API's loop in 256 KB chunks between reads from storage, and read by a
command thread of the worker.

Usage: .venv/bin/python benchmarks/whatsmeow_media_frame.py [--size-mb 16] [--repeat 7]
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from openwa.engines.base import InboundMedia, MessageReceived
from openwa.engines.whatsmeow.protocol import decode_event, encode_event, pack
from openwa.engines.whatsmeow.transfer import new_path, write_file

MB = 1024 * 1024


def event(media: InboundMedia) -> MessageReceived:
    stamp = datetime(2026, 12, 3, tzinfo=UTC)
    return MessageReceived("3EB0X", "1555@s.whatsapp.net", None, "document", {}, stamp, media=media)


def former_frame(data: bytes) -> bytes:
    """The frame as it was: the event with its bytes inline, base64 by orjson's default."""
    media = InboundMedia("application/pdf", len(data), "a.pdf")
    frame = {"kind": "event", "session": "s1", **encode_event(event(media))}
    frame["data"]["media"]["data"] = data
    body = orjson.dumps(frame, default=_base64)
    return len(body).to_bytes(4, "big") + body


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def read_former(frame: bytes) -> bytes:
    body = orjson.loads(frame[4:])
    return base64.b64decode(body["data"]["media"]["data"])


def timed(work: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds of `work` over `repeat` runs, and its last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    data = os.urandom(args.size_mb * MB)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path = new_path(directory, "in")
        write_file(path, data)
        media = InboundMedia("application/pdf", len(data), "a.pdf", path=path)
        now = {"kind": "event", "session": "s1", **encode_event(event(media))}

        before_pack, frame_before = timed(lambda: former_frame(data), args.repeat)
        before_read, _ = timed(lambda: read_former(frame_before), args.repeat)
        after_pack, frame_after = timed(lambda: pack(now), args.repeat)
        after_read, _ = timed(lambda: decode_event(orjson.loads(frame_after[4:])), args.repeat)

        def write_once() -> None:
            target = new_path(directory, "w")
            write_file(target, data)
            target.unlink()

        file_write, _ = timed(write_once, args.repeat)
        file_read, _ = timed(path.read_bytes, args.repeat)

    before, after = before_pack + before_read, after_pack + after_read
    print(f"Media frame cost, {args.size_mb} MiB payload (median of {args.repeat})\n")
    print("| frame | size | pack ms | read ms | pack + read ms |")
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| before: base64 in JSON | {len(frame_before) / MB:.1f} MiB | {before_pack * 1e3:.1f} "
        f"| {before_read * 1e3:.1f} | {before * 1e3:.1f} |"
    )
    print(
        f"| after: path in JSON | {len(frame_after)} B | {after_pack * 1e3:.3f} "
        f"| {after_read * 1e3:.3f} | {after * 1e3:.3f} |"
    )
    print(f"\nRatio before / after (frame): {before / after:,.0f} x")
    print(
        f"The file itself: write {file_write * 1e3:.1f} ms, read {file_read * 1e3:.1f} ms "
        "(see the module's docstring for where each happens)."
    )


if __name__ == "__main__":
    main()
