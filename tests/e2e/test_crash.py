"""`kill -9` in the middle of 500 sends: nothing accepted is lost, nothing is doubled.

The server runs in a subprocess with two linked mock sessions A and B, and a webhook
on A whose receiver is down. Threads accept text messages from A to B as fast as the
API answers; at about half-way the server is killed with SIGKILL while the posting
goes on; it starts again, the receiver comes up, and then:

- every accepted message ends `sent` or further, and B received each exactly once;
- A's transmit log has every accepted id (a resend after the crash is allowed, always
  with the same id) and sends kept each thread's acceptance order;
- every event of A after the webhook was registered reaches the receiver, and the
  receiver's first sighting of each (by `webhook-id`) is in the event log's order;
- a consumer paging the event log from cursor 0 sees every event once, in order.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.events.support import (
    check_envelope,
    check_log_order,
    create_ready_session,
    page_all_sync,
    wait_sync,
)
from tests.fixtures.app import ADMIN_KEY
from tests.fixtures.server import ServerProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOTAL = 500
KILL_AFTER = 250
THREADS = 4
# Generous: after the crash, the sends claimed by the dead process wait out their lease
# (60 s), and a loaded CI machine sends a few messages a second.
SETTLE_TIMEOUT_S = 300.0
DONE_STATUSES = {"sent", "delivered", "read"}


# The webhook receiver: down at first, up after the restart.


@dataclass
class Delivery:
    webhook_id: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.deliveries.append(
                        Delivery(headers.get("webhook-id", ""), headers, body)
                    )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def first_seen(self) -> list[str]:
        with self.lock:
            ids = [d.webhook_id for d in self.deliveries]
        return list(dict.fromkeys(ids))

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)


# The senders: threads that keep posting through the crash and the restart.


@dataclass
class Sends:
    url: str
    session: str
    chat_id: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: list[tuple[int, int, str, str]] = field(default_factory=list)  # thread, seq, id, text
    unconfirmed: set[str] = field(default_factory=set)  # texts whose answer never came
    refused: Counter[int] = field(default_factory=Counter)
    in_flight: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def run(self, thread: int) -> None:
        seq = 0
        with httpx.Client(base_url=self.url, headers={"X-API-Key": ADMIN_KEY}, timeout=10) as http:
            while not self.stop.is_set():
                with self.lock:
                    if len(self.accepted) + self.in_flight >= TOTAL:
                        if not self.in_flight:
                            return
                        wait = True
                    else:
                        self.in_flight += 1
                        wait = False
                if wait:
                    time.sleep(0.01)
                    continue
                text = f"crash test {thread}-{seq}"
                seq += 1
                try:
                    response = http.post(
                        f"/api/sessions/{self.session}/messages/text",
                        json={"chatId": self.chat_id, "text": text},
                    )
                except httpx.TransportError as exc:
                    with self.lock:
                        self.in_flight -= 1
                        if not isinstance(exc, httpx.ConnectError):
                            # Sent, but no answer: it may or may not have been accepted.
                            self.unconfirmed.add(text)
                    time.sleep(0.05)  # the server is down; it will be back
                    continue
                with self.lock:
                    self.in_flight -= 1
                    if response.status_code == 202:
                        data = response.json()["data"]
                        assert data["status"] == "pending", data
                        self.accepted.append((thread, seq - 1, data["id"], text))
                    else:
                        self.refused[response.status_code] += 1
                if response.status_code != 202:
                    time.sleep(0.05)


def _create_webhook(client: httpx.Client, session: str, url: str) -> str:
    response = client.post(f"/api/sessions/{session}/webhooks", json={"url": url})
    assert response.status_code == 201, response.text
    secret: str = response.json()["data"]["secret"]
    return secret


def _events(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    return page_all_sync(client, **params)


def _last_cursor(client: httpx.Client) -> int:
    events = _events(client)
    return events[-1]["cursor"] if events else 0


@contextlib.contextmanager
def _receiver(port: int) -> Iterator[Receiver]:
    receiver = Receiver(port)
    try:
        yield receiver
    finally:
        receiver.stop()


def test_kill_9_mid_way_loses_nothing_and_doubles_nothing(
    server_factory: Callable[..., ServerProcess],
) -> None:
    started = time.monotonic()
    server = server_factory(
        WEBHOOK_ALLOW_PRIVATE="true",
        WEBHOOK_BACKOFF_BASE_S="0.05",
        WEBHOOK_BACKOFF_MAX_S="0.5",
        # The receiver is down for a while; its deliveries must not run out of attempts.
        WEBHOOK_MAX_ATTEMPTS="100000",
        MOCK_ACK_DELAY_MS="20",
    )
    server.start()
    with server.client() as client:
        a = create_ready_session(client, "crash-a")
        b = create_ready_session(client, "crash-b")
    b_chat = f"{b['phoneNumber']}@s.whatsapp.net"
    stages: dict[str, float] = {"sessions ready": round(time.monotonic() - started, 1)}

    def stage(name: str) -> None:
        stages[name] = round(time.monotonic() - started, 1)
        print(f"crash test: {name} at {stages[name]}s", flush=True)

    with _receiver(free_port()) as receiver:  # nothing listens there yet
        with server.client() as client:
            before_hook = _last_cursor(client)
            secret = _create_webhook(client, a["id"], receiver.url)

        sends = Sends(server.url, a["id"], b["phoneNumber"])
        threads = [
            threading.Thread(target=sends.run, args=(n,), daemon=True) for n in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        try:
            wait_sync(sends.count, lambda n: n >= KILL_AFTER, 180, f"{KILL_AFTER} accepted sends")
            stage("posting")
            code = server.stop(signal.SIGKILL)
            assert code == -signal.SIGKILL
            at_kill = sends.count()
            stage("killed")
            time.sleep(0.3)  # the senders keep trying against a dead server
            server.start()
            stage("restarted")
            receiver.start()
            for thread in threads:
                thread.join(timeout=180)
            stage("all accepted")
            assert not any(t.is_alive() for t in threads), "the senders did not finish"
        finally:
            sends.stop.set()

        accepted = {message_id: text for _, _, message_id, text in sends.accepted}
        assert len(accepted) == len(sends.accepted) == TOTAL, "an id was handed out twice"
        assert KILL_AFTER <= at_kill < TOTAL, at_kill

        problems: list[str] = []

        with server.client() as client:
            # Every accepted message is sent (or further) after the restart.
            def sent_ids() -> set[str]:
                return {
                    e["data"]["id"]
                    for e in _events(client, sessions=a["id"], events="message.sent")
                }

            try:
                wait_sync(
                    sent_ids,
                    lambda ids: set(accepted) <= ids,
                    SETTLE_TIMEOUT_S,
                    "every accepted message to be sent",
                )
            except AssertionError:
                problems.append(
                    f"not every accepted message was sent within {SETTLE_TIMEOUT_S}s: "
                    f"{len(set(accepted) - sent_ids())} never were"
                )
            stage("all sent")

            # Let the acks settle: the log stops growing.
            def quiet() -> tuple[int, float]:
                return _last_cursor(client), time.monotonic()

            last: list[tuple[int, float]] = [quiet()]

            def settled(now: tuple[int, float]) -> bool:
                if now[0] != last[0][0]:
                    last[0] = now
                    return False
                return now[1] - last[0][1] >= 1.5

            wait_sync(quiet, settled, 120, "the event log to settle")
            stage("log settled")

            # The messages themselves.
            for message_id, text in accepted.items():
                response = client.get(f"/api/sessions/{a['id']}/messages/{message_id}")
                assert response.status_code == 200, response.text
                message = response.json()["data"]
                if message["status"] not in DONE_STATUSES:
                    problems.append(f"message {message_id} ended {message['status']}: {message}")
                assert message["text"] == text
                assert message["chatId"] == b_chat
            stage("messages read")

            a_events = _events(client, sessions=a["id"])
            b_received = _events(client, sessions=b["id"], events="message.received")
            transmitted_response = client.get(
                f"/api/sessions/{a['id']}/mock/transmitted", params={"limit": 10000}
            )
            assert transmitted_response.status_code == 200, transmitted_response.text
            transmitted = transmitted_response.json()["data"]
            transmitted_ids = [item["messageId"] for item in transmitted]
            transmissions = Counter(transmitted_ids)

            # B received each accepted message exactly once, and nothing A did not send.
            received = Counter(e["data"]["id"] for e in b_received)
            twice = {i: n for i, n in received.items() if n > 1}
            if twice:
                problems.append(f"B received {len(twice)} messages more than once: {twice}")
            missing = sorted(set(accepted) - set(received))
            if missing:
                detail = []
                for message_id in missing[:10]:
                    stored = client.get(f"/api/sessions/{b['id']}/messages/{message_id}")
                    detail.append(
                        f"{message_id} (transmitted {transmissions[message_id]}x, "
                        f"B's store: {stored.status_code})"
                    )
                problems.append(
                    f"B never received {len(missing)} accepted messages: {', '.join(detail)}"
                )
            for message_id in set(received) - set(accepted):
                # Accepted by a request whose answer the crash swallowed.
                response = client.get(f"/api/sessions/{a['id']}/messages/{message_id}")
                assert response.status_code == 200, (message_id, response.text)
                assert response.json()["data"]["text"] in sends.unconfirmed
            for message_id in sorted(set(accepted) & set(received))[:: max(1, TOTAL // 50)]:
                response = client.get(f"/api/sessions/{b['id']}/messages/{message_id}")
                assert response.status_code == 200, response.text
                stored = response.json()["data"]
                assert stored["fromMe"] is False
                assert stored["text"] == accepted[message_id]

            # A's transmit log: every accepted id; a resend keeps its id.
            sent_by_text: dict[str, set[str]] = {}
            for item in transmitted:
                assert item["chatId"] == b_chat, item
                sent_by_text.setdefault(item["content"].get("text", ""), set()).add(
                    item["messageId"]
                )
            changed = {t: ids for t, ids in sent_by_text.items() if len(ids) > 1}
            if changed:
                problems.append(f"a resend got a new id: {changed}")
            never = sorted(set(accepted) - set(transmitted_ids))
            if never:
                problems.append(f"{len(never)} accepted messages never transmitted: {never[:10]}")
            for message_id in set(transmitted_ids) - set(accepted):
                response = client.get(f"/api/sessions/{a['id']}/messages/{message_id}")
                assert response.status_code == 200, (message_id, response.text)
                assert response.json()["data"]["text"] in sends.unconfirmed
            # Each thread's messages were sent in the order they were accepted.
            first_sent = {m: i for i, m in reversed(list(enumerate(transmitted_ids)))}
            for number in range(THREADS):
                mine = [m for t, _, m, _ in sends.accepted if t == number and m in first_sent]
                positions = [first_sent[m] for m in mine]
                if positions != sorted(positions):
                    problems.append(f"thread {number}'s messages were sent out of order")

            # message.sent once per message; acks only forward.
            sent_count = Counter(e["data"]["id"] for e in a_events if e["event"] == "message.sent")
            not_once = {m: sent_count[m] for m in accepted if sent_count[m] != 1}
            if not_once:
                problems.append(f"message.sent not exactly once: {not_once}")
            for message_id in accepted:
                statuses = [
                    e["data"]["status"]
                    for e in a_events
                    if e["data"].get("id") == message_id
                    and e["event"] in ("message.sent", "message.ack")
                ]
                if statuses not in (["sent"], ["sent", "delivered"], ["sent", "delivered", "read"]):
                    problems.append(f"{message_id}'s statuses in the log: {statuses}")

            # Webhooks: every event of A since the webhook exists, first seen in log order.
            expected = [e["id"] for e in a_events if e["cursor"] > before_hook]
            assert len(expected) >= 2 * TOTAL
            try:
                wait_sync(
                    receiver.first_seen,
                    lambda seen: set(expected) <= set(seen),
                    SETTLE_TIMEOUT_S,
                    "every event of A at the receiver",
                )
            except AssertionError:
                lost = set(expected) - set(receiver.first_seen())
                problems.append(f"{len(lost)} events of A never reached the receiver")
            stage("webhooks delivered")
            first_seen = receiver.first_seen()
            if first_seen != expected:
                problems.append(
                    "the receiver's first sightings are not the log's order: "
                    + _first_difference(first_seen, expected)
                )
            by_id = {e["id"]: e for e in a_events}
            verifier = Webhook(secret)
            for delivery in receiver.snapshot():
                envelope = json.loads(delivery.body)
                verifier.verify(delivery.body.decode(), delivery.headers)
                assert envelope["id"] == delivery.webhook_id
                check_envelope(envelope, logged=False)
                logged = dict(by_id[envelope["id"]])
                logged.pop("cursor")
                assert envelope == logged

            # A consumer reading the whole log now sees every event once, in order.
            whole = _events(client)
            check_log_order(whole)
            for event in whole:
                check_envelope(event)
            assert [e["id"] for e in _events(client, limit=97)] == [e["id"] for e in whole]
            assert {e["id"] for e in a_events} <= {e["id"] for e in whole}

    timing = {
        **stages,
        "total_s": round(time.monotonic() - started, 1),
        "accepted_at_kill": at_kill,
        "unconfirmed": len(sends.unconfirmed),
        "refused": dict(sends.refused),
        "transmissions": len(transmitted),
        "deliveries": len(receiver.snapshot()),
    }
    print("crash test:", timing)
    assert not problems, "\n".join(problems)


def _first_difference(seen: list[str], expected: list[str]) -> str:
    for index, (got, want) in enumerate(zip(seen, expected, strict=False)):
        if got != want:
            return f"first difference at {index}: got {got}, expected {want}"
    return f"lengths differ: {len(seen)} seen, {len(expected)} expected"
