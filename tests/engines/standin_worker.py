"""The real whatsmeow worker process, with Go's client replaced by a stand-in at the
network's edge. What reaches that edge is written down, one line each, in the file
`OPENWA_TEST_SENDS` names: `upload <size> <sha256>`, `send <session> <image's
width>x<height> <thumbnail bytes>`, `presence <session> <state>`, `subscribe <session>
<contact>`, and `connect <session>` and `stop <session>` for Go's client coming up and
being stopped. A send never
answers when `OPENWA_TEST_SEND_HANGS` is set (a send in flight when the test kills the
worker); a download answers with `OPENWA_TEST_INBOUND` bytes."""

from __future__ import annotations

import hashlib
import os
import threading
from types import SimpleNamespace
from typing import Any

from neonize import client as neonize_client
from neonize.proto import Neonize_pb2 as neonize

from openwa.engines.whatsmeow import worker
from tests.engines.go_standin import LinkedGoStandIn

INBOUND = b"\x89PNG inbound media " * 1000


def _note(line: str) -> None:
    with open(os.environ["OPENWA_TEST_SENDS"], "a") as sends:
        sends.write(line + "\n")


class EdgeOfWhatsApp(LinkedGoStandIn):
    def connect(self, proxy: Any = None) -> None:
        _note(f"connect {self.uuid}")
        super().connect(proxy)

    def stop(self) -> None:
        _note(f"stop {self.uuid}")
        super().stop()

    def upload(self, data: bytes, _media_type: Any = None) -> Any:
        _note(f"upload {len(data)} {hashlib.sha256(data).hexdigest()}")
        return neonize.UploadResponse(
            url="https://mmg.whatsapp.net/x",
            DirectPath="/v/t62/x",
            MediaKey=b"key",
            FileEncSHA256=b"enc",
            FileSHA256=hashlib.sha256(data).digest(),
            FileLength=len(data),
        )

    def send_message(self, _to: Any, message: Any) -> Any:
        image = message.imageMessage
        _note(f"send {self.uuid} {image.width}x{image.height} {len(image.JPEGThumbnail)}")
        if os.environ.get("OPENWA_TEST_SEND_HANGS"):
            threading.Event().wait()  # WhatsApp's answer never comes
        return SimpleNamespace(ID="3EB0STANDIN" + os.urandom(6).hex().upper())

    def download_any(self, _message: Any) -> bytes:
        return INBOUND

    def send_presence(self, presence: Any) -> None:
        _note(f"presence {self.uuid} {presence.name}")

    def subscribe_presence(self, jid: Any) -> None:
        _note(f"subscribe {self.uuid} {jid.User}@{jid.Server}")


if __name__ == "__main__":
    neonize_client.NewClient = EdgeOfWhatsApp  # type: ignore[misc,assignment]
    worker.main()
