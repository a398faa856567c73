"""A stand-in `ffmpeg` (FFMPEG_PATH) that records how it was run, then runs the real one.

It is a real executable, started by the server exactly as ffmpeg is: it writes one JSON
line when it starts (its arguments, its resource limits, its working directory and what
is in it) and one when the real ffmpeg ends, so a test can check the command line and
the limits it carried, and count conversions in flight. With a gate, it waits for the
gate file before running ffmpeg, so a test can hold conversions open.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCRIPT = """\
import json, os, resource, signal, subprocess, sys, time
LOG, REAL, GATE = {log!r}, {real!r}, {gate!r}

def record(**item):
    item["pid"] = os.getpid()
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(item) + "\\n").encode())
    finally:
        os.close(fd)

limits = {{
    name: resource.getrlimit(getattr(resource, name))[0]
    for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE")
}}
record(
    event="start",
    argv=sys.argv[1:],
    limits=limits,
    cwd=os.getcwd(),
    entries=os.listdir("."),
    pgid=os.getpgid(0),
)
while GATE and not os.path.exists(GATE):
    time.sleep(0.02)
code = subprocess.run([REAL, *sys.argv[1:]]).returncode
record(event="end", code=code)
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


@dataclass
class FfmpegSpy:
    path: Path
    log: Path
    gate: Path | None

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def starts(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"] == "start"]

    def open_gate(self) -> None:
        assert self.gate is not None
        self.gate.touch()

    def most_in_flight(self) -> int:
        """The most conversions running at once, replayed from the ordered log."""
        running, most = 0, 0
        for record in self.records():
            running += 1 if record["event"] == "start" else -1
            most = max(most, running)
        return most


def make_spy(directory: Path, real: str, *, gated: bool = False) -> FfmpegSpy:
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "ffmpeg-calls.jsonl"
    gate = directory / "gate" if gated else None
    script = directory / "ffmpeg"
    body = _SCRIPT.format(log=str(log), real=real, gate=str(gate) if gate else "")
    script.write_text(f"#!{sys.executable} -I\n{body}")
    script.chmod(0o755)
    return FfmpegSpy(script, log, gate)
