"""Whether a process still runs, for sweeping what a dead one left behind."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Whether process `pid` exists (someone else's counts: it is not ours to sweep)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
