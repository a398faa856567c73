"""Memory of a large media upload: the server's peak RSS against a baseline in the same run.

Starts the real server (`python -m openwa serve`, SQLite, local storage), links two mock
sessions A and B, then measures the server process's peak resident memory (VmHWM in
/proc/<pid>/status):

- baseline: right before any upload (sessions ready), and after a 1 KB document upload;
- a 30 MB document posted by A to B's number as multipart/form-data by a streaming client
  (aiohttp reading the file object in chunks): VmHWM after the 202;
- then after B has stored its copy (`message.received`), and after a streamed download.

The headline is the growth of VmHWM from the 1 KB upload to the 30 MB one, as a share of
the upload size (about 0 means the upload streams through; about 1 or more means it is
held in memory). Where the kernel allows it (writing 5 to /proc/<pid>/clear_refs), each
phase's own peak above the RSS it started from is shown too.

Usage: .venv/bin/python benchmarks/media_upload.py [--size-mb 30] [--database-url URL]
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from bench_server import KEY, free_port, serve, wait_healthy

MB = 1024 * 1024


def memory(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of `pid`, in bytes."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            values[name] = int(rest.split()[0]) * 1024
    return values


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0; needs the right to write clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Row:
    point: str
    hwm: int
    rss: int
    phase_peak: int | None  # the phase's own peak above the RSS it started from


class Server:
    def __init__(self, data_dir: Path, database_url: str, size: int) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / "server.log"
        env = {
            "DATABASE_URL": database_url,
            "DATA_DIR": str(data_dir),
            "MOCK_AUTH_DELAY_MS": "100",
            "MOCK_ACK_DELAY_MS": "50",
            "MAX_MEDIA_BYTES": str(max(64 * MB, size + MB)),
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = serve(self.port, env, log, cwd=data_dir.parent)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def wait_json(
    http: aiohttp.ClientSession, url: str, done: Any, timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        async with http.get(url) as response:
            if response.status == 200:
                body = await response.json()
                if done(body["data"]):
                    data: dict[str, Any] = body["data"]
                    return data
        await asyncio.sleep(0.05)
    raise RuntimeError(f"timed out waiting on {url}: {body}")


async def upload(
    http: aiohttp.ClientSession, base: str, path: Path, chat_id: str
) -> tuple[dict[str, Any], float]:
    """A multipart document send, the file streamed from disk by aiohttp."""
    started = time.perf_counter()
    with path.open("rb") as file:
        form = aiohttp.FormData()
        form.add_field("chatId", chat_id)
        form.add_field("type", "document")
        form.add_field("caption", path.name)
        form.add_field("file", file, filename=path.name, content_type="application/octet-stream")
        async with http.post(f"{base}/api/sessions/a/messages/media", data=form) as response:
            body = await response.json()
            if response.status != 202:
                raise RuntimeError(f"upload answered {response.status}: {body}")
    data: dict[str, Any] = body["data"]
    return data, time.perf_counter() - started


def random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(MB, left))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


async def bench(size: int, database_url: str | None) -> tuple[list[Row], dict[str, float]]:
    work = Path(tempfile.mkdtemp(prefix="openwa-bench-media-"))
    data_dir = work / "data"
    url = database_url or f"sqlite+aiosqlite:///{work / 'openwa.db'}"
    small, large = work / "small.bin", work / "large.bin"
    random_file(small, 1024)
    large_sha = random_file(large, size)
    server = Server(data_dir, url, size)
    rows: list[Row] = []
    info: dict[str, float] = {}
    can_reset = False

    def phase_start() -> int:
        return memory(server.pid)["VmRSS"] if can_reset and reset_peak(server.pid) else 0

    def record(point: str, start_rss: int) -> None:
        mem = memory(server.pid)
        peak = mem["VmHWM"] - start_rss if can_reset else None
        rows.append(Row(point, mem["VmHWM"], mem["VmRSS"], peak))

    try:
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(headers={"X-API-Key": KEY}, timeout=timeout) as http:
            await wait_healthy(http, server.base, server.process, server.log)
            sessions: dict[str, dict[str, Any]] = {}
            for name in ("a", "b"):
                async with http.post(server.base + "/api/sessions", json={"name": name}) as r:
                    assert r.status == 201, await r.text()
            for name in ("a", "b"):
                sessions[name] = await wait_json(
                    http, f"{server.base}/api/sessions/{name}", lambda s: s["status"] == "ready"
                )
            chat_id = "+" + sessions["b"]["phoneNumber"]
            await asyncio.sleep(0.5)  # let start-up work settle

            # clear_refs must be writable for per-phase peaks; try it once, harmlessly.
            can_reset = reset_peak(server.pid)
            record("before any upload (baseline)", phase_start())

            start = phase_start()
            sent, _ = await upload(http, server.base, small, chat_id)
            record("after a 1 KB upload (baseline)", start)

            start = phase_start()
            sent, seconds = await upload(http, server.base, large, chat_id)
            record(f"after a {size / MB:.0f} MB upload (202)", start)
            info["upload_s"] = seconds
            assert sent["media"]["size"] == size, sent

            start = phase_start()
            events_url = f"{server.base}/api/events?sessions=b&events=message.received&limit=1000"
            await wait_json(
                http,
                events_url,
                lambda d: any(e["data"]["id"] == sent["id"] for e in d["events"]),
                timeout=120,
            )
            record("after the recipient B stored its copy", start)

            start = phase_start()
            digest, got = hashlib.sha256(), 0
            media_url = f"{server.base}/api/sessions/b/messages/{sent['id']}/media"
            async with http.get(media_url) as response:
                assert response.status == 200, await response.text()
                async for chunk in response.content.iter_chunked(256 * 1024):
                    digest.update(chunk)
                    got += len(chunk)
            record("after a streamed download of B's copy", start)
            assert got == size, f"downloaded {got} of {size} bytes"
            assert digest.hexdigest() == large_sha, "downloaded bytes differ"
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    info["can_reset"] = float(can_reset)
    return rows, info


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=30.0)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    size = int(args.size_mb * MB)
    rows, info = await bench(size, args.database_url)

    def mb(value: int) -> str:
        return f"{value / MB:.1f}"

    print(
        f"\nServer peak RSS (VmHWM) around a {size / MB:.0f} MB multipart upload, "
        f"{os.cpu_count()} cores, upload took {info['upload_s']:.2f} s "
        f"({size / MB / info['upload_s']:.0f} MB/s)\n"
    )
    per_phase = bool(info["can_reset"])
    header = "| point | VmHWM MB | VmRSS MB |" + (
        " phase peak above its start MB |" if per_phase else ""
    )
    print(header)
    print("| --- | --- | --- |" + (" --- |" if per_phase else ""))
    for row in rows:
        line = f"| {row.point} | {mb(row.hwm)} | {mb(row.rss)} |"
        if per_phase:
            line += f" {mb(row.phase_peak or 0)} |"
        print(line)
    baseline = rows[1].hwm
    growth = rows[2].hwm - baseline
    print(
        f"\nVmHWM growth from the 1 KB upload to the {size / MB:.0f} MB upload: "
        f"{mb(growth)} MB = {growth / size:.2f} x the upload size"
    )
    if per_phase:
        print(
            f"The upload phase's own peak above its starting RSS: {mb(rows[2].phase_peak or 0)} MB "
            f"= {(rows[2].phase_peak or 0) / size:.2f} x; the recipient's copy: "
            f"{mb(rows[3].phase_peak or 0)} MB = {(rows[3].phase_peak or 0) / size:.2f} x"
        )


if __name__ == "__main__":
    asyncio.run(main())
