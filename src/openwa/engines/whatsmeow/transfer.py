"""Media crossing between the API process and the whatsmeow worker, as files.

As base64 inside a JSON frame, a 64 MiB file made an 85 MiB frame whose encoding and
decoding held the API's event loop for about a second. Instead, the side that has the
bytes writes them to a file in a private directory (0700 under `DATA_DIR`, one per
engine) and the frame names the file; the side that takes it over removes it (the API
after the worker's answer to a send; storing an inbound message moves the file into our
storage). What a crash leaves behind goes with its directory: a directory whose process
is gone is removed when the next engine makes its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

from openwa.kit.private_files import PRIVATE_FILE_MODE, private_dir
from openwa.kit.processes import alive


@contextlib.contextmanager
def _new_file(path: Path) -> Iterator[BinaryIO]:
    """A new file at `path`, readable by this user only, open for writing; removed if
    anything (a full disk, a cancellation of the write's task) interrupts the block, so
    that no partial file is taken for a whole one, or left behind."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def write_file(path: Path, data: bytes) -> None:
    """Write a transfer file, readable by this user only (none is left if it fails)."""
    with _new_file(path) as handle:
        handle.write(data)


def new_path(directory: Path, kind: str) -> Path:
    return directory / f"{kind}-{secrets.token_hex(12)}"


class TransferDirectory:
    """The engine's own directory under `root`, made on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            private_dir(self.root)
            _remove_orphans(self.root)
            # mkdtemp makes it 0700.
            self._path = Path(tempfile.mkdtemp(prefix=f"pid{os.getpid()}-", dir=self.root))
        return self._path

    async def write(self, chunks: AsyncIterator[bytes]) -> Path:
        """A new file holding `chunks` (a stored object, on its way to the worker)."""
        path = new_path(self.path, "out")
        with _new_file(path) as handle:
            async for chunk in chunks:
                handle.write(chunk)
        return path

    def close(self) -> None:
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None


def _remove_orphans(root: Path) -> None:
    """Remove the directories of engines whose process has ended (a crash)."""
    for child in root.iterdir():
        pid = child.name.removeprefix("pid").split("-", 1)[0]
        if not child.is_dir() or not pid.isdigit() or alive(int(pid)):
            continue
        shutil.rmtree(child, ignore_errors=True)
