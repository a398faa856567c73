"""The whatsmeow worker's own decisions, with neonize's client replaced at Go's edge
(`go_standin`): stopping Go after an unscanned QR, the answers WhatsApp gives that are
not errors to a client, and a send whose outcome cannot be known."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator
from hashlib import sha256
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from neonize import client as neonize_client
from neonize import events as ev
from neonize.exc import GetProfilePictureError, SendMessageError
from neonize.proto import Neonize_pb2 as neonize
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

from openwa.engines.base import SEND_OUTCOME_UNKNOWN
from openwa.engines.whatsmeow import go_errors, transfer
from openwa.engines.whatsmeow.commands import CommandError, run_command
from openwa.engines.whatsmeow.go_maps import GoMapsLock
from openwa.engines.whatsmeow.protocol import read_frame
from openwa.engines.whatsmeow.worker import Worker
from openwa.engines.whatsmeow.worker_session import Downloads, WorkerSession
from tests.engines.go_standin import GoStandIn
from tests.engines.standin_worker import INBOUND
from tests.engines.whatsmeow_support import inject, started, whatsmeow
from tests.fixtures.app import Api, wait_for
from tests.media.support import b64, png

ANN = "15550101111"


def jid(user: str, server: str = "s.whatsapp.net") -> Any:
    return neonize.JID(User=user, Server=server, Device=0, Integrator=0)


@pytest.fixture
async def worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[tuple[Worker, Any]]:
    """A worker on a socket pair, its Go clients stand-ins; and the API's end."""
    monkeypatch.setattr(neonize_client, "NewClient", GoStandIn)
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=theirs)
    api_reader, api_writer = await asyncio.open_unix_connection(sock=ours)
    running = Worker(
        reader,
        writer,
        max_media_bytes=1 << 20,
        qr_timeout_s=0.05,
        transfer_dir=tmp_path,
        download_timeout_s=0.5,
    )
    yield running, api_reader
    for session_id in list(running.sessions):
        await running.handle("forget", {"session": session_id})
    running.commands.shutdown(wait=False)
    writer.close()
    api_writer.close()


async def next_event(reader: asyncio.StreamReader, event_type: str) -> dict[str, Any]:
    while (frame := await asyncio.wait_for(read_frame(reader), 10)) is not None:
        if frame.get("kind") == "event" and frame["type"] == event_type:
            return frame
    raise AssertionError(f"the worker ended before {event_type}")


async def test_after_a_qr_timeout_go_is_stopped_and_the_session_starts_again(
    worker: tuple[Worker, Any],
) -> None:
    running, api = worker
    connect = {"session": "s1", "location": "unused", "jid": None, "proxy": None}
    await running.handle("connect", dict(connect))
    session = running.sessions["s1"]
    go = session.client
    await wait_for(lambda: asyncio.sleep(0, go.connects), lambda n: n == 1, 10, "connect")
    session.push("qr", "2@only,code")
    failed = await next_event(api, "Failed")
    assert failed["data"]["reason"].startswith("QR_TIMEOUT")
    await running.handle("close", {"session": "s1"})  # what the runtime does next
    # Before, Go's connect call was left waiting and this failed after 5 s with
    # "the previous connection is still closing".
    await running.handle("connect", dict(connect))
    await wait_for(lambda: asyncio.sleep(0, go.connects), lambda n: n == 2, 10, "restart")
    assert go.stops == 1  # once, although both the timeout and the close stopped it


class Answers(SimpleNamespace):
    """neonize's client answering the commands as WhatsApp would."""


def command(op: str, client: Any, args: dict[str, Any]) -> Any:
    session = object.__new__(WorkerSession)
    session.go_lock = threading.Lock()
    session.host = SimpleNamespace(go_maps=GoMapsLock())  # type: ignore[assignment]
    session.go_connected = True
    session.client = client
    return run_command(session, op, args)


@pytest.mark.parametrize("text", [go_errors.PICTURE_NOT_SET, go_errors.PICTURE_HIDDEN])
def test_no_or_a_hidden_profile_picture_is_none(text: str) -> None:
    def missing(_jid: Any) -> Any:
        # As neonize raises it: the whole answer, Go's error text inside.
        raise GetProfilePictureError(neonize.GetProfilePictureReturnFunction(Error=text))

    assert command("picture", Answers(get_profile_picture=missing), {"chat": ANN}) is None


def test_other_profile_picture_failures_stay_errors() -> None:
    def refused(_jid: Any) -> Any:
        raise GetProfilePictureError(
            neonize.GetProfilePictureReturnFunction(Error="rate-overlimit")
        )

    with pytest.raises(CommandError) as error:
        command("picture", Answers(get_profile_picture=refused), {"chat": ANN})
    assert error.value.kind == "refused"


def test_a_profile_picture_is_its_url() -> None:
    def found(_jid: Any) -> Any:
        return neonize.ProfilePictureInfo(URL="https://pps.whatsapp.net/a.jpg")

    answers = Answers(get_profile_picture=found)
    assert command("picture", answers, {"chat": ANN}) == "https://pps.whatsapp.net/a.jpg"


def test_the_error_texts_are_the_ones_compiled_into_neonize() -> None:
    """neonize passes Go errors as text only: an upgrade changing one must fail here."""
    library = next(Path(neonize_client.__file__).parent.glob("*.so")).read_bytes()
    for text in (
        go_errors.PICTURE_NOT_SET,
        go_errors.PICTURE_HIDDEN,
        go_errors.SEND_TIMED_OUT,
        go_errors.SERVER_RETURNED_ERROR,
    ):
        assert text.encode() in library


@pytest.mark.parametrize("phone", [ANN, f"+{ANN}"])
def test_number_checks_ask_whatsmeow_with_a_plus(phone: str) -> None:
    asked: list[tuple[str, ...]] = []

    def is_on_whatsapp(*numbers: str) -> Any:
        asked.append(numbers)
        return [neonize.IsOnWhatsAppResponse(Query=numbers[0], JID=jid(ANN), IsIn=True)]

    found = command("check", Answers(is_on_whatsapp=is_on_whatsapp), {"phone": phone})
    assert asked == [(f"+{ANN}",)]
    assert found == f"{ANN}@s.whatsapp.net"


@pytest.mark.parametrize(
    ("action", "code", "status"),
    [
        ("add", 0, "ok"),
        ("add", 200, "ok"),
        ("add", 404, "not_found"),
        ("add", 409, "already_member"),
        ("add", 403, "not_allowed"),
        ("add", 408, "not_allowed"),
        ("add", 500, "not_allowed"),
        ("remove", 404, "not_member"),
        ("promote", 404, "not_member"),
        ("demote", 404, "not_member"),
        ("add", 499, "error_499"),
    ],
)
def test_participant_results_use_the_contracts_words(action: str, code: int, status: str) -> None:
    def update(_group: Any, members: list[Any], _change: Any) -> Any:
        return [neonize.GroupParticipant(JID=member, Error=code) for member in members]

    args = {"group": "120363000000000001@g.us", "action": action, "participants": [ANN]}
    results = command("participants", Answers(update_group_participants=update), args)
    assert results == [{"id": f"{ANN}@s.whatsapp.net", "status": status}]


def _sending_session(send_message: Any) -> WorkerSession:
    session = object.__new__(WorkerSession)
    session.go_lock = threading.Lock()
    session.host = SimpleNamespace(go_maps=GoMapsLock())  # type: ignore[assignment]
    session.go_connected = True
    session.client = Answers(send_message=send_message)
    return session


@pytest.mark.parametrize(
    ("code", "retryable"), [(463, False), (479, False), (403, False), (429, True), (500, True)]
)
def test_a_send_whatsapp_refuses_with_a_4xx_is_not_retried(code: int, retryable: bool) -> None:
    """Each was retried (five times over about 15 s): a refusal comes again, and an
    account that keeps trying is what WhatsApp penalises."""

    def refused(_to: Any, _message: Any) -> Any:
        raise SendMessageError(f"{go_errors.SERVER_RETURNED_ERROR} {code}")

    message = {"id": "OUR1", "chat_id": ANN, "type": "text", "content": {"text": "hi"}}
    with pytest.raises(CommandError) as error:
        run_command(_sending_session(refused), "send", {"message": message})
    assert error.value.retryable is retryable


def test_a_send_whose_answer_timed_out_is_not_retried() -> None:
    def timed_out(_to: Any, _message: Any) -> Any:
        raise SendMessageError(go_errors.SEND_TIMED_OUT)

    message = {"id": "OUR1", "chat_id": ANN, "type": "text", "content": {"text": "hi"}}
    with pytest.raises(CommandError) as error:
        run_command(_sending_session(timed_out), "send", {"message": message})
    assert (error.value.retryable, error.value.code) == (False, SEND_OUTCOME_UNKNOWN)


async def test_a_send_whose_worker_dies_mid_send_fails_and_never_goes_twice(
    wm_api: Api, edge: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real worker, up to a Go client whose send never answers: the worker is killed
    while the send is in flight."""
    monkeypatch.setenv("OPENWA_TEST_SEND_HANGS", "1")
    sends = edge
    session_id = await started(wm_api)
    await wm_api.wait_status(session_id, "ready", 20)
    accepted = await wm_api.request(
        "POST", f"/api/sessions/{session_id}/messages/text", json={"chatId": ANN, "text": "hi"}
    )
    assert accepted.status_code == 202, accepted.text
    message_id = accepted.json()["data"]["id"]

    async def transmitted() -> int:
        return sum(line.startswith("send ") for line in sends.read_text().splitlines())

    await wait_for(transmitted, bool, 20, "the send reaching Go")
    engine = whatsmeow(wm_api)
    pid = engine.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    message = await wait_for(
        lambda: wm_api.request("GET", f"/api/sessions/{session_id}/messages/{message_id}"),
        lambda r: r.json()["data"]["status"] == "failed",
        20,
        "the message failed",
    )
    assert message.json()["data"]["error"].startswith(f"{SEND_OUTCOME_UNKNOWN}: ")
    # The session is back on a new worker, and the message was not sent again.
    await wait_for(
        lambda: asyncio.sleep(0, engine.worker_pid),
        lambda p: p is not None and p != pid,
        20,
        "a new worker",
    )
    await wm_api.wait_status(session_id, "ready", 20)
    assert await transmitted() == 1


class SlowDownloads(GoStandIn):
    """Downloads answer at once, except an image captioned `stuck`, until released."""

    def __init__(self, name: str = "unset", uuid: str = "") -> None:
        super().__init__(name, uuid)
        self.release = threading.Event()

    def download_any(self, message: Any) -> bytes:
        if message.imageMessage.caption == "stuck":
            self.release.wait()
        return b"picture bytes"


def image_message(message_id: str, caption: str) -> Any:
    source = neonize.MessageSource(Chat=jid(ANN), Sender=jid(ANN))
    info = neonize.MessageInfo(MessageSource=source, ID=message_id, Timestamp=1_764_000_000_000)
    image = wa.ImageMessage(mimetype="image/jpeg", fileLength=13, caption=caption)
    return ev.MessageEv(Info=info, Message=wa.Message(imageMessage=image))


async def test_a_stuck_download_holds_up_neither_other_events_nor_the_session(
    worker: tuple[Worker, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(neonize_client, "NewClient", SlowDownloads)
    running, api = worker
    connect = {"session": "s1", "location": "unused", "jid": None, "proxy": None}
    await running.handle("connect", connect)
    session = running.sessions["s1"]
    session.go_connected = True  # as whatsmeow reports it
    session.push("MessageEv", image_message("STUCK", "stuck"))
    session.push("MessageEv", image_message("FINE", "fine"))
    text = image_message("TEXT", "")
    text.Message.Clear()
    text.Message.conversation = "after the pictures"
    session.push("MessageEv", text)
    received = [(await next_event(api, "MessageReceived"))["data"] for _ in range(3)]
    # The stuck one comes last, given up after the download timeout.
    assert {m["id"] for m in received[:2]} == {"FINE", "TEXT"}
    stuck = received[2]
    assert stuck["id"] == "STUCK"
    assert stuck["media"] is None
    assert stuck["content"]["mediaError"] == "download failed: no answer in 0.5 s"
    fine = next(m for m in received if m["id"] == "FINE")
    path = Path(fine["media"]["path"])
    assert path.parent == tmp_path
    assert path.read_bytes() == b"picture bytes"
    assert fine["media"]["data"] is None
    assert path.stat().st_mode & 0o777 == 0o600
    session.client.release.set()
    await wait_for(lambda: asyncio.sleep(0, session.reading), lambda n: n == 0, 10, "the thread")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the stuck one wrote nothing


async def test_downloads_are_bounded_and_stuck_ones_stop_new_ones(
    worker: tuple[Worker, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of media messages downloads a few at a time (each holds its file in
    memory), and once enough downloads hang in Go (their threads cannot be stopped) new
    ones are refused at once, the messages reported with `mediaError`."""
    monkeypatch.setattr(neonize_client, "NewClient", SlowDownloads)
    running, api = worker
    running.downloads = Downloads(at_once=2, stuck_max=3)
    await running.handle(
        "connect", {"session": "s1", "location": "unused", "jid": None, "proxy": None}
    )
    session = running.sessions["s1"]
    session.go_connected = True
    for n in range(5):
        session.push("MessageEv", image_message(f"STUCK{n}", "stuck"))
    await wait_for(lambda: asyncio.sleep(0, session.reading), lambda n: n == 2, 10, "two")
    await asyncio.sleep(0.1)
    assert session.reading == 2  # the others wait for a slot
    received = [(await next_event(api, "MessageReceived"))["data"] for _ in range(5)]
    errors = [m["content"]["mediaError"] for m in received]
    # Given up after the timeout two at a time, until the stuck ones reach the bound
    # (three or four of them, as the timeouts fall); the rest refused at once.
    timed_out = [e for e in errors if e == "download failed: no answer in 0.5 s"]
    refused = [e for e in errors if e.endswith("earlier downloads of this worker are stuck")]
    assert len(timed_out) >= 3
    assert refused
    assert len(timed_out) + len(refused) == 5
    assert running.downloads.stuck == len(timed_out)
    session.client.release.set()
    await wait_for(lambda: asyncio.sleep(0, running.downloads.stuck), lambda n: n == 0, 10, "ended")


class HeldWrite:
    """`transfer.write_file` held until the test lets it go: before it creates the file,
    or with the file made and part of it written."""

    def __init__(self, *, created: bool) -> None:
        self.created = created
        self.real = transfer.write_file
        self.entered, self.go_on, self.done = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )

    def __call__(self, path: Path, data: bytes) -> None:
        self.entered.set()
        try:
            if not self.created:
                self.go_on.wait(10)
                self.real(path, data)
                return
            with path.open("xb") as handle:
                handle.write(data[:4])
                handle.flush()
                self.go_on.wait(10)
                handle.write(data[4:])
        finally:
            self.done.set()


@pytest.mark.parametrize("created", [False, True], ids=["before-the-file", "mid-write"])
@pytest.mark.parametrize("interrupted", [TimeoutError, asyncio.CancelledError])
async def test_a_download_given_up_during_its_write_leaves_no_file(
    worker: tuple[Worker, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    created: bool,
    interrupted: type[BaseException],
) -> None:
    """Go answered, and the worker's thread is writing the file when the download is
    given up (its timeout, or its task cancelled). The loop removed the file at once:
    a thread that had yet to create it then made it, and it stayed until the engine's
    transfer directory went. Now the thread removes it when it is done writing."""
    monkeypatch.setattr(neonize_client, "NewClient", SlowDownloads)
    running, _api = worker
    await running.handle(
        "connect", {"session": "s1", "location": "unused", "jid": None, "proxy": None}
    )
    session = running.sessions["s1"]
    session.go_connected = True
    write = HeldWrite(created=created)
    monkeypatch.setattr(transfer, "write_file", write)
    message = image_message("HELD", "fine").Message
    downloading = asyncio.ensure_future(session._download(message, 13))
    await wait_for(lambda: asyncio.sleep(0, write.entered.is_set()), bool, 10, "the write")
    if interrupted is asyncio.CancelledError:
        downloading.cancel()
    with pytest.raises(interrupted):
        await downloading  # the timeout is the worker fixture's 0.5 s
    write.go_on.set()
    await wait_for(lambda: asyncio.sleep(0, write.done.is_set()), bool, 10, "the write's end")
    await wait_for(lambda: asyncio.sleep(0, list(tmp_path.iterdir())), lambda left: not left, 2)


async def test_a_transfer_write_that_fails_leaves_no_file(tmp_path: Path) -> None:
    """Either way a transfer file is written, one cut short (a full disk, a stream that
    breaks or is cancelled) is removed, never taken for a whole one or left behind."""

    async def breaking() -> AsyncIterator[bytes]:
        yield b"part"
        raise OSError("the store went away")

    transfers = transfer.TransferDirectory(tmp_path)
    with pytest.raises(OSError, match="went away"):
        await transfers.write(breaking())
    with pytest.raises(TypeError):
        transfer.write_file(tmp_path / "in-broken", "not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.rglob("*-*")) == [transfers.path]
    transfers.close()


async def test_media_crosses_to_and_from_the_worker_as_files(wm_api: Api, edge: Path) -> None:
    session_id = await started(wm_api)
    await wm_api.wait_status(session_id, "ready", 20)
    transfers = whatsmeow(wm_api).transfers.path
    picture = png(8, 8)
    accepted = await wm_api.request(
        "POST",
        f"/api/sessions/{session_id}/messages/media",
        json={"chatId": ANN, "type": "image", "media": {"base64": b64(picture)}},
    )
    assert accepted.status_code == 202, accepted.text
    sent_id = accepted.json()["data"]["id"]
    await wait_for(
        lambda: wm_api.request("GET", f"/api/sessions/{session_id}/messages/{sent_id}"),
        lambda r: r.json()["data"]["status"] == "sent",
        20,
        "the send",
    )
    stored = await wm_api.request("GET", f"/api/sessions/{session_id}/messages/{sent_id}/media")
    uploaded = [line.split() for line in edge.read_text().splitlines() if line.startswith("upload")]
    assert uploaded == [["upload", str(len(stored.content)), sha256(stored.content).hexdigest()]]
    assert list(transfers.iterdir()) == []  # removed once the worker answered
    [send] = [line.split() for line in edge.read_text().splitlines() if line.startswith("send")]
    assert send[2] == "8x8"  # the picture's size, read from the file in the worker
    assert int(send[3]) > 0  # and its thumbnail

    await inject(wm_api, session_id, image_message("INBOUND1", "from Ann"))
    inbound = await wait_for(
        lambda: wm_api.request("GET", f"/api/sessions/{session_id}/messages/INBOUND1/media"),
        lambda r: r.status_code == 200,
        20,
        "the inbound media stored",
    )
    assert inbound.content == INBOUND
    assert list(transfers.iterdir()) == []  # moved into our storage


async def test_mark_online_shows_the_account_online_and_presence_can_be_followed(
    wm_api: Api, edge: Path
) -> None:
    """`markOnline` makes the worker tell WhatsApp the account is available once
    connected (else WhatsApp sends no presence); following a contact asks for its."""
    online = await started(wm_api, markOnline=True)
    quiet = await started(wm_api)
    for session_id in (online, quiet):
        await wm_api.wait_status(session_id, "ready", 20)

    def noted(kind: str) -> list[list[str]]:
        return [line.split() for line in edge.read_text().splitlines() if line.startswith(kind)]

    await wait_for(lambda: asyncio.sleep(0, noted("presence")), bool, 20, "presence sent")
    assert noted("presence") == [["presence", online, "AVAILABLE"]]
    response = await wm_api.request("POST", f"/api/sessions/{online}/contacts/{ANN}/presence")
    assert response.status_code == 200, response.text
    contact = ANN + "@s.whatsapp.net"
    assert response.json()["data"] == {"contactId": contact, "subscribed": True}
    assert noted("subscribe") == [["subscribe", online, contact]]
    # Applied on the next connection: the change says a restart is needed.
    changed = await wm_api.request(
        "PATCH", f"/api/sessions/{quiet}", json={"config": {"markOnline": True}}
    )
    assert changed.json()["data"]["reconnectRequired"] is True
