"""A stand-in for the Node.js bridge at the libraries' edge: it speaks the bridge's wire
protocol (docs/bridge.md) and plays a linked account, so the engine's Python side is
tested whole without WhatsApp. Every `send` is appended to `$STANDIN_LOG`; the first one
of each message id makes the process die before answering (a crash mid-send). Every
`hold` word is appended to `$STANDIN_HOLDS`; `standin_inbound` (the tests' own op) makes
it report that many text messages at once."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

ME = "15550000001"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", required=True)
    parser.add_argument("--transfer-dir")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--fence-after-s", type=float)  # it never fences
    args = parser.parse_args()
    channel = socket.socket(fileno=args.fd)
    reader = channel.makefile("rb")
    log_path = os.environ["STANDIN_LOG"]

    def write(frame: dict[str, object]) -> None:
        channel.sendall(json.dumps({"v": 1, **frame}).encode() + b"\n")

    write({"kind": "hello", "engine": args.engine, "pid": os.getpid()})
    for line in reader:
        command = json.loads(line)
        if command.get("kind") == "heartbeat":
            continue
        op, session = command.get("op"), command.get("session")
        if op == "shutdown":
            break
        if op == "send":
            message_id = command["args"]["id"]
            earlier = Path(log_path).read_text().split() if os.path.exists(log_path) else []
            with open(log_path, "a") as log:
                log.write(message_id + "\n")
            if message_id not in earlier:
                os._exit(1)  # the message may have gone out; no answer comes
            write({"kind": "reply", "id": command["id"], "result": {"id": message_id}})
            continue
        if op == "hold":
            # What the bridge is told about the session's report flow, one word a line.
            with open(os.environ.get("STANDIN_HOLDS", os.devnull), "a") as holds:
                holds.write(f"{'hold' if command['args']['hold'] else 'go on'}\n")
        write({"kind": "reply", "id": command["id"], "result": {}})
        if op == "start":
            linked(write, args.engine, session)
        if op == "standin_inbound":  # the test's own: N text messages from a peer, at once
            for i in range(command["args"]["count"]):
                write(
                    {
                        "kind": "event",
                        "session": session,
                        "name": "messages.upsert",
                        "data": inbound(i),
                    }
                )
    sys.exit(0)


def inbound(i: int) -> dict[str, object]:
    """A text message as Baileys reports it (`messages.upsert` of type `notify`)."""
    key = {"remoteJid": "15550000002@s.whatsapp.net", "fromMe": False, "id": f"3EB0IN{i:04d}"}
    message = {"key": key, "message": {"conversation": f"in {i}"}, "pushName": "Peer"}
    return {"type": "notify", "messages": [{**message, "messageTimestamp": "1764770000"}]}


def linked(write, engine: str, session: str) -> None:  # type: ignore[no-untyped-def]
    if engine == "baileys":
        creds = {"me": {"id": f"{ME}:1@s.whatsapp.net", "name": "Me"}}
        write({"kind": "auth", "session": session, "creds": creds})
        write(
            {
                "kind": "event",
                "session": session,
                "name": "connection.update",
                "data": {"connection": "open"},
            }
        )
    else:
        info = {"wid": {"_serialized": f"{ME}@c.us"}, "pushname": "Me"}
        write({"kind": "event", "session": session, "name": "ready", "data": {"info": info}})


if __name__ == "__main__":
    main()
