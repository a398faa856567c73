"""The real whatsmeow worker process, with Go's client replaced by a stand-in whose
sends are written down (one line each, in `OPENWA_TEST_SENDS`) and then never answer:
a send in flight when the test kills the worker."""

from __future__ import annotations

import os
import threading
from typing import Any

import neonize.client

from openwa.engines.whatsmeow import worker
from tests.engines.go_standin import LinkedGoStandIn


class HangingSends(LinkedGoStandIn):
    def send_message(self, _to: Any, _message: Any) -> Any:
        with open(os.environ["OPENWA_TEST_SENDS"], "a") as sends:
            sends.write(f"{self.uuid}\n")
        threading.Event().wait()  # WhatsApp's answer never comes


if __name__ == "__main__":
    neonize.client.NewClient = HangingSends  # type: ignore[misc,assignment]
    worker.main()
