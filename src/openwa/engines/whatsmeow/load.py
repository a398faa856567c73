"""What a whatsmeow worker reports of its load, and the device stores neonize leaks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class WorkerLoad:
    """What a worker reports of itself (`ping`, and every `connect`'s reply)."""

    attempts: int  # connection attempts started in the process
    sessions: int  # sessions it holds
    live: int  # of them, connected to WhatsApp

    @property
    def leaked(self) -> int:
        """Device stores neonize left open: one per attempt beyond each session's own."""
        return max(0, self.attempts - self.sessions)
