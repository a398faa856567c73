"""Three instances as one gateway: ownership, failover, no loss, no doubles.

Three real `openwa serve` processes (started by tools/cluster-example.sh, as
docs/deployment.md shows) share one PostgreSQL database, Redis and an S3 bucket, with 30
mock sessions created through all three. The scenarios run in this order on the same
cluster (module scope): the spread; live events on another instance; `kill -9`;
`SIGSTOP` past the lease and `SIGCONT`; a media send accepted by a non-owner; SIGTERM.
The last tests read what all of them left behind: the mock's record of every
connection (never two at once), every accepted message received exactly once, every
event delivered to the webhook.

Sessions leases are `SESSION_LEASE_S=3` (the shortest allowed) so that a pause outlasts
one quickly. Times are measured and printed (`-s` shows them); the bounds asserted are
generous, for a loaded CI machine: benchmarks/cluster.py records real failover times.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook
from websockets.sync.client import connect

from tests.cluster.support import (
    LEASE_S,
    SHUTDOWN_TIMEOUT_S,
    Cluster,
    Sent,
    now,
    send_text,
    wait_for,
)
from tests.e2e.test_crash import Receiver
from tests.fixtures.server import free_port
from tests.media.support import b64, png

pytestmark = [pytest.mark.cluster, pytest.mark.in_order, pytest.mark.e2e, pytest.mark.postgres]

SESSIONS = 30
NAMES = ("a", "b", "c")
FAILOVER_BOUND_S = 60.0
SETTLE_S = 60.0


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    hooks = Receiver(free_port())
    hooks.start()
    yield hooks
    hooks.stop()


@pytest.fixture(scope="module")
def sent() -> Sent:
    return Sent()


@pytest.fixture(scope="module")
def webhook_secret(cluster: Cluster, receiver: Receiver) -> str:
    """An instance-wide webhook, registered through `a` before any session exists."""
    with cluster.client("a") as http:
        response = http.post("/api/webhooks", json={"url": receiver.url})
    assert response.status_code == 201, response.text
    secret: str = response.json()["data"]["secret"]
    return secret


def _ring(cluster: Cluster) -> list[tuple[str, str]]:
    """Each session sends to the next one (by creation order), the last to the first."""
    ids = list(cluster.created_on)
    return [(ids[i], ids[(i + 1) % len(ids)]) for i in range(len(ids))]


def _send_round(cluster: Cluster, sent: Sent, tag: str, pairs: list[tuple[str, str]]) -> int:
    """One text along each pair, through an instance that serves the sender; how many
    were accepted (an instance that is down or does not know the session refuses)."""
    accepted = 0
    for sender, recipient in pairs:
        via = cluster.knows(sender)
        message_id = send_text(cluster, via, sender, recipient, f"{tag} {sender}->{recipient}")
        if message_id is not None:
            sent.add(message_id, sender, recipient)
            accepted += 1
    return accepted


@contextlib.contextmanager
def _traffic(
    cluster: Cluster, sent: Sent, tag: str, pairs: Callable[[], list[tuple[str, str]]]
) -> Iterator[None]:
    """Rounds of texts along `pairs()` in a thread of their own while the body runs (and
    polls for what it waits for without waiting on the posts)."""
    stop = threading.Event()

    def run() -> None:
        rounds = 0
        while not stop.is_set():
            _send_round(cluster, sent, f"{tag} {rounds}", pairs())
            rounds += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def test_thirty_sessions_spread_over_three_instances(cluster: Cluster, webhook_secret: str) -> None:
    for i in range(SESSIONS):
        via = NAMES[i % 3]
        with cluster.client(via) as http:
            response = http.post("/api/sessions", json={"name": f"s{i:02d}", "engine": "mock"})
        assert response.status_code == 201, response.text
        cluster.created_on[response.json()["data"]["id"]] = via
    took = cluster.wait_settled(cluster.created_on, NAMES, SETTLE_S, "30 sessions ready")
    print(f"\n30 sessions ready on three instances in {took:.1f} s")
    owners = {name: cluster.owned_by(name) for name in NAMES}
    # A session starts where it was created (that instance had room): ten each.
    for name in NAMES:
        created = sorted(s for s, via in cluster.created_on.items() if via == name)
        assert owners[name] == created, (name, owners)
    assert cluster.database.live_members(NAMES) == set(NAMES)
    rows = cluster.database.fetch("SELECT id, phone_number FROM sessions")
    cluster.phones.update({r["id"]: r["phone_number"] for r in rows})
    assert all(cluster.phones[s] for s in cluster.created_on)


def test_a_websocket_on_c_sees_the_events_of_sessions_on_a_and_b(cluster: Cluster) -> None:
    frames: list[dict[str, Any]] = []
    opened = threading.Event()
    done = threading.Event()
    c = cluster.instances["c"]

    def listen() -> None:
        url = f"ws://127.0.0.1:{c.port}/ws?apiKey={cluster.api_key}&events=message.sent"
        with connect(url, open_timeout=10) as ws:
            opened.set()
            while not done.is_set():
                try:
                    frames.append(json.loads(ws.recv(timeout=0.2)))
                except TimeoutError:
                    continue

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert opened.wait(10)
    on_a, on_b = cluster.owned_by("a")[0], cluster.owned_by("b")[0]
    ids = {
        send_text(cluster, "a", on_a, on_b, "to b, seen on c"): on_a,
        send_text(cluster, "b", on_b, on_a, "to a, seen on c"): on_b,
    }
    assert None not in ids
    try:
        wait_for(
            lambda: {f["data"]["id"] for f in frames} >= set(ids), 30, "message.sent on c's socket"
        )
    finally:
        done.set()
        thread.join(5)
    seen = {f["data"]["id"]: f["sessionId"] for f in frames if f["data"]["id"] in ids}
    assert seen == ids


def _received_once(cluster: Cluster, sent: Sent, timeout: float = SETTLE_S) -> float:
    """Wait until every accepted message raised `message.received` at its recipient;
    then none may have raised it twice. The seconds it took."""
    ids = sent.ids()

    def all_in() -> dict[str, int] | None:
        counts = cluster.database.received(ids)
        return counts if len(counts) == len(ids) else None

    try:
        counts, took = wait_for(all_in, timeout, f"{len(ids)} messages received", every=0.25)
    except AssertionError as exc:
        missing = sorted(set(ids) - set(cluster.database.received(ids)))
        raise AssertionError((str(exc)[:200], cluster.database.sends(missing[:10]))) from None
    doubled = {i: n for i, n in counts.items() if n != 1}
    assert not doubled, f"received more than once: {doubled}"
    return took


def test_kill_9_moves_its_sessions_and_loses_no_message(cluster: Cluster, sent: Sent) -> None:
    pairs = _ring(cluster)
    victims = cluster.owned_by("a")
    assert len(victims) == 10
    assert _send_round(cluster, sent, "before kill", pairs) == SESSIONS
    cluster.instances["a"].kill()
    with _traffic(cluster, sent, "during kill", lambda: pairs):
        took = cluster.wait_settled(victims, ("b", "c"), FAILOVER_BOUND_S, "a's sessions")
    print(f"\nkill -9: a's 10 sessions ready on b and c after {took:.1f} s")
    takers = {owner for owner, _ in (cluster.database.leases()[s] for s in victims)}
    assert takers == {"b", "c"}, takers  # both survivors take a share
    a = cluster.instances["a"]
    a.launch()  # back (starting meanwhile), with no sessions until some are free again
    assert _send_round(cluster, sent, "after kill", pairs) == SESSIONS
    print(f"{len(sent.ids())} messages received once each in {_received_once(cluster, sent):.1f} s")
    a.wait_healthy()
    assert cluster.owned_by("a") == []
    assert cluster.database.live_members(NAMES) == set(NAMES)


def test_sigstop_past_the_lease_fences_the_paused_instance(cluster: Cluster, sent: Sent) -> None:
    b = cluster.instances["b"]
    victims = cluster.owned_by("b")
    epochs = {s: epoch for s, (_, epoch) in cluster.database.leases().items() if s in victims}
    pairs = _ring(cluster)
    # Sends of b's sessions in flight, so that b may be paused holding some.
    _send_round(cluster, sent, "before stop", pairs)
    b.signal(signal.SIGSTOP)
    b.paused_at = stopped = now()
    try:
        with _traffic(cluster, sent, "during stop", lambda: _serving(cluster, pairs, "b")):
            took = cluster.wait_settled(victims, ("a", "c"), FAILOVER_BOUND_S, "b's sessions")
        print(f"\nSIGSTOP: b's {len(victims)} sessions ready on a and c after {took:.1f} s")
        assert took >= LEASE_S - 1.0, "taken before b's leases could have run out"
        _send_round(cluster, sent, "while b is stopped", _serving(cluster, pairs, "b"))
    finally:  # b runs again whatever failed (the tests after this one need it)
        b.signal(signal.SIGCONT)
        b.paused_at = None
    resumed = now()
    cluster.paused_window = (stopped, resumed)
    # b drops each session it no longer owns, and beats again as a live member.
    _, dropped = wait_for(
        lambda: {e["session_id"] for e in b.log_events("session_fenced")} >= set(victims),
        30,
        "b to drop its former sessions",
    )
    _, beat = wait_for(
        lambda: cluster.database.fetch(
            "SELECT 1 FROM instances WHERE id = 'b' AND last_seen > $1", resumed
        ),
        30,
        "b's heartbeat",
    )
    print(f"b dropped them {dropped:.1f} s after SIGCONT, and beat again {beat:.1f} s later")
    assert "b" in cluster.database.live_members(NAMES)
    # Nothing went out from b under its old epochs once another instance took over.
    taken = {
        r["session_id"]: r["connected_at"]
        for r in cluster.database.fetch(
            "SELECT session_id, min(connected_at) AS connected_at FROM mock_connections"
            " WHERE instance <> 'b' AND connected_at > $1 GROUP BY session_id",
            stopped,
        )
    }
    late = cluster.database.fetch(
        "SELECT session_id, message_id, epoch, created_at FROM mock_transmissions"
        " WHERE instance = 'b' AND session_id = ANY($1::text[]) AND created_at > $2",
        victims,
        stopped,
    )
    stale = [
        r
        for r in late
        if r["epoch"] == epochs[r["session_id"]] and r["created_at"] >= taken[r["session_id"]]
    ]
    assert not stale, f"b transmitted after losing the lease: {stale}"
    _send_round(cluster, sent, "after stop", pairs)
    # Sends b had claimed when it stopped are taken back by the sessions' new owners,
    # not left until b's claims run out (a minute).
    took = _received_once(cluster, sent, timeout=45)
    print(f"{len(sent.ids())} messages received once each, {took:.1f} s after the last round")


def _serving(cluster: Cluster, pairs: list[tuple[str, str]], paused: str) -> list[tuple[str, str]]:
    """The pairs whose sender can be served without the paused instance."""
    return [(s, r) for s, r in pairs if cluster.knows(s) != paused]


def test_a_media_send_accepted_by_a_non_owner_goes_out_through_the_owner(
    cluster: Cluster, sent: Sent
) -> None:
    # b was created with sessions it no longer owns (they moved while it was stopped);
    # it still serves their routes.
    leases = cluster.database.leases()
    sender = next(s for s, via in cluster.created_on.items() if via == "b" and leases[s][0] != "b")
    owner = leases[sender][0]
    recipient = next(s for s in cluster.created_on if s != sender)
    image = png()
    with cluster.client("b") as http:
        response = http.post(
            f"/api/sessions/{sender}/messages/media",
            json={
                "chatId": cluster.phones[recipient],
                "type": "image",
                "media": {"base64": b64(image), "mimetype": "image/png"},
                "caption": "through b",
            },
        )
    assert response.status_code == 202, response.text
    message_id = response.json()["data"]["id"]
    sent.add(message_id, sender, recipient)
    (row,), _ = wait_for(
        lambda: cluster.database.transmissions([message_id]), 30, "the media transmission"
    )
    assert row["instance"] == owner, (row["instance"], owner)
    media = json.loads(row["payload"])["media"]
    assert media["mimetype"] == "image/png"
    assert media["size"] == len(image)
    stored = cluster.s3.client().get_object(Bucket=cluster.bucket, Key=media["key"])
    assert stored["Body"].read() == image  # in the shared bucket, where b put it
    # The recipient's instance serves the bytes it received.
    wait_for(lambda: cluster.database.received([message_id]), 30, "the media received")
    via = cluster.knows(recipient)
    with cluster.client(via) as http:
        got = http.get(f"/api/sessions/{recipient}/messages/{message_id}/media")
    assert got.status_code == 200, got.text
    assert got.content == image


def test_sigterm_drains_in_time_and_loses_nothing(cluster: Cluster, sent: Sent) -> None:
    c = cluster.instances["c"]
    victims = cluster.owned_by("c")
    assert victims
    burst = [(s, r) for s, r in _ring(cluster) if s in victims]
    for n in range(3):  # queued on c's sessions as it is told to stop
        _send_round(cluster, sent, f"before sigterm {n}", burst)
    code, took = c.terminate(timeout=SHUTDOWN_TIMEOUT_S + 20)
    print(
        f"\nSIGTERM: c exited {code} after {took:.1f} s (SHUTDOWN_TIMEOUT_S={SHUTDOWN_TIMEOUT_S})"
    )
    assert code == 0
    assert took < SHUTDOWN_TIMEOUT_S
    moved = cluster.wait_settled(victims, ("a", "b"), FAILOVER_BOUND_S, "c's sessions to move")
    print(f"c's {len(victims)} sessions ready on a and b {moved:.1f} s after it exited")
    takers = {cluster.database.leases()[s][0] for s in victims}
    # Both instances that came back (a after its kill, b after its pause) take a share.
    assert takers == {"a", "b"}, takers
    assert "c" not in {r["id"] for r in cluster.database.fetch("SELECT id FROM instances")}
    took = _received_once(cluster, sent)
    print(f"{len(sent.ids())} messages received once each, {took:.1f} s later")


def test_no_session_was_ever_connected_twice_at_once(cluster: Cluster) -> None:
    """Per session, the mock's connection records, in the order they began: each ended
    before the next began, and epochs never went down (and went up with each new owner).

    The mock closes a session's open record when a newer connection opens ("replaced
    by ...", as WhatsApp replaces a stream); such an end proves nothing, it is itself
    an overlap, except where the older holder was provably unable to act:
    - killed (`kill -9`): its process was gone, so its record really ended at the kill;
      the next connection must begin after it;
    - paused past its lease (SIGSTOP): it was frozen, and its record is taken to end when
      its lease ran out at the latest (the pause plus SESSION_LEASE_S); that it sent
      nothing after that is shown by the transmissions check of the SIGSTOP test, and
      its own clock made it drop the session before anything else on waking.
    Any other record ended by a replacement fails, as does one still open whose session
    has another open.
    """
    killed = {i.name: i.killed_at for i in cluster.instances.values() if i.killed_at}
    paused = {"b": cluster.paused_window} if cluster.paused_window else {}
    by_session: dict[str, list[Any]] = {}
    for row in cluster.database.connections():
        by_session.setdefault(row["session_id"], []).append(row)
    assert set(by_session) >= set(cluster.created_on)
    problems = []
    for session_id, rows in by_session.items():
        for before, after in itertools.pairwise(rows):
            end = before["ended_at"]
            reason = before["end_reason"] or ""
            if before["instance"] in killed and before["connected_at"] < killed[before["instance"]]:
                end = min(end or killed[before["instance"]], killed[before["instance"]])
            elif reason.startswith("replaced by"):
                window = paused.get(before["instance"])
                if window is None or not window[0] <= end <= window[1] + timedelta(
                    seconds=LEASE_S * 2
                ):
                    problems.append((session_id, "replaced while its holder ran", dict(before)))
                    continue
                end = min(end, window[0] + timedelta(seconds=LEASE_S))
            if end is None or end > after["connected_at"]:
                problems.append((session_id, "overlap", dict(before), dict(after)))
            if after["epoch"] < before["epoch"] or (
                after["instance"] != before["instance"] and after["epoch"] == before["epoch"]
            ):
                problems.append((session_id, "epoch", dict(before), dict(after)))
    assert not problems, problems


def test_each_session_has_one_live_owner_at_the_end(cluster: Cluster) -> None:
    live = {i.name for i in cluster.live()}
    assert cluster.database.live_members(NAMES) == live
    assert not cluster.unsettled(cluster.created_on, live)


def test_every_event_reached_the_webhook(
    cluster: Cluster, receiver: Receiver, webhook_secret: str
) -> None:
    """Every event of every session (all of them after the webhook was registered) was
    delivered at least once, correctly signed, whichever instance delivered it."""
    events = {
        r["id"]
        for r in cluster.database.fetch(
            "SELECT id FROM events WHERE session_id = ANY($1::text[])", list(cluster.created_on)
        )
    }
    _, took = wait_for(
        lambda: set(receiver.first_seen()) >= events, SETTLE_S, "every event at the webhook"
    )
    print(f"\n{len(events)} events delivered to the webhook ({took:.1f} s after the last test)")
    verifier = Webhook(webhook_secret)
    for delivery in receiver.snapshot():
        verifier.verify(delivery.body.decode(), delivery.headers)
