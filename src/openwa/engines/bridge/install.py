"""Installing the Node.js bridge: its program and pinned dependencies, copied from the
package into a writable directory and installed there with `npm ci`.

Never at import time: `openwa engines install` does it, or the first start of a Baileys
or whatsapp-web.js session. The program's files and its lock file are hashed; an
installation whose stamp names the same hash is used as it is, so a restart costs
nothing and an upgrade of OpenWA installs the bridge again by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO

import structlog

from openwa.engines.children import child_environment

log = structlog.get_logger(__name__)

MIN_NODE_MAJOR = 20
_STAMP = ".openwa-installed"
# The bridge's own files, relative to its folder in the package (never node_modules).
_SKIP = {
    "node_modules",
    "test",
    "test-support",
    "scripts",
    ".gitignore",
    "eslint.config.js",
}
_NPM_TIMEOUT_S = 600.0


def _locked(path: Path) -> IO[str]:
    handle = open(path, "w")  # noqa: SIM115 - held until the caller closes it
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


# `node --version` by binary, once it answered well: one process, not one per call.
_VERSIONS: dict[str, str] = {}


class BridgeUnavailable(Exception):
    """Node.js is missing or too old, or the bridge's dependencies cannot be installed."""


def source_dir() -> Path:
    """The bridge program inside the installed package."""
    return Path(str(resources.files("openwa.engines.bridge") / "node"))


def _files(root: Path) -> list[Path]:
    found: list[Path] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and relative.parts[0] not in _SKIP and not path.name.startswith(_STAMP):
            found.append(relative)
    return found


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


def source_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for relative in _files(root):
        digest.update(str(relative).encode() + b"\0" + (root / relative).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class NodeRuntime:
    """Where `node` and `npm` are, and where the bridge is installed."""

    node: str
    directory: Path

    def _tool(self, name: str) -> str:
        """`npm` beside the chosen `node` when there is one, else on PATH."""
        node = shutil.which(self.node)
        if node is not None:
            sibling = Path(node).resolve().parent / name
            if sibling.exists():
                return str(sibling)
        found = shutil.which(name)
        if found is None:
            raise BridgeUnavailable(f"{name} was not found (it comes with Node.js)")
        return found

    async def version(self) -> str:
        """`node --version`, checked against the minimum; a good answer is kept (asked
        by every `GET /api/engines` and bridge start), a refusal asked again."""
        known = _VERSIONS.get(self.node)
        if known is not None:
            return known
        if shutil.which(self.node) is None:
            raise BridgeUnavailable(
                f"Node.js was not found ({self.node!r}); Baileys and whatsapp-web.js need "
                f"Node.js {MIN_NODE_MAJOR} or newer (NODE_BINARY)"
            )
        process = await asyncio.create_subprocess_exec(
            self.node,
            "--version",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await process.communicate()
        version = out.decode().strip()
        match = re.match(r"v(\d+)\.", version)
        if match is None or int(match.group(1)) < MIN_NODE_MAJOR:
            raise BridgeUnavailable(
                f"Node.js {version or 'of unknown version'} is too old: Baileys and "
                f"whatsapp-web.js need Node.js {MIN_NODE_MAJOR} or newer"
            )
        _VERSIONS[self.node] = version
        return version

    @property
    def entry(self) -> Path:
        return self.directory / "bridge.js"

    def installed(self) -> bool:
        stamp = self.directory / _STAMP
        return stamp.exists() and stamp.read_text().strip() == source_hash(source_dir())

    def stamp(self) -> None:
        """Mark the directory installed (a copy whose dependencies someone else put in).
        Atomic, and only when it changes: a process checking the stamp meanwhile never
        reads it half-written (and installs again)."""
        wanted = source_hash(source_dir())
        stamp = self.directory / _STAMP
        if stamp.exists() and stamp.read_text().strip() == wanted:
            return
        partial = stamp.with_name(f"{_STAMP}.{os.getpid()}")
        partial.write_text(wanted)
        partial.replace(stamp)

    async def install(self) -> None:
        """Copy the program and `npm ci` its runtime dependencies (no browser download:
        whatsapp-web.js drives the machine's chromium)."""
        await self.version()
        source = source_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        in_place = self.directory.resolve() == source.resolve()
        for relative in [] if in_place else _files(source):
            target = self.directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / relative, target)
        env = {
            # The packages' install scripts run with it: none of our settings' secrets.
            **child_environment(os.environ),
            "PUPPETEER_SKIP_DOWNLOAD": "1",
            "npm_config_fund": "false",
            "npm_config_audit": "false",
            "npm_config_update_notifier": "false",
        }
        process = await asyncio.create_subprocess_exec(
            self._tool("npm"),
            "ci",
            "--omit=dev",
            "--no-progress",
            cwd=self.directory,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), _NPM_TIMEOUT_S)
        except TimeoutError:
            await _kill(process)
            raise BridgeUnavailable("npm ci did not finish in time") from None
        except BaseException:
            # Cancelled (shutdown): no `npm ci` is left writing into the directory after
            # its lock is released, where the next install would run beside it.
            await _kill(process)
            raise
        if process.returncode != 0:
            tail = out.decode(errors="replace").strip().splitlines()[-5:]
            raise BridgeUnavailable("npm ci failed: " + " | ".join(tail))
        self.stamp()
        log.info("bridge_installed", directory=str(self.directory))

    async def ensure(self) -> None:
        """Install unless installed; another process installing the same directory (an
        instance beside this one, a test process) is waited for, not raced."""
        if self.installed():
            await self.version()
            return
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        lock = await asyncio.to_thread(_locked, self.directory.with_suffix(".lock"))
        try:
            if not self.installed():
                await self.install()
        finally:
            lock.close()  # closing the file releases the lock
