"""Files and directories the server creates under `DATA_DIR` are its own: 0600 and 0700.

The database, the whatsmeow device stores and stored media hold message contents and
account keys; the default umask (022) would leave them readable by every local user.
Our own code creates with explicit modes; files that others create for us (SQLite's
journal, obstore's media files, whatsmeow's Go side, ffmpeg's outputs) follow the
process umask, which `openwa` sets to 077 when it starts.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PRIVATE_UMASK = 0o077


def use_private_umask() -> None:
    """Everything this process creates from now on is readable by its own user only."""
    os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """`mkdir -p` with 0700 for the directory itself (its missing parents follow umask)."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    return path


def touch_private(path: Path) -> None:
    """Create `path` as 0600 if it is missing; an existing file keeps its mode.

    SQLite gives its -wal and -shm files the database file's mode, so creating the
    database this way covers them too."""
    private_dir(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE))


def write_private(path: Path, text: str) -> None:
    """Write a small file created as 0600."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
