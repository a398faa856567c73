"""neonize's client as the whatsmeow worker uses it, standing in for Go at its edge.

It behaves as goneonize's source does where our worker depends on it: `connect()` blocks
until `stop()` (neonize's connect call waits on the client's context, also after
whatsmeow gave up on an unscanned QR), and `stop()` of a client that is gone does
nothing. Everything past it (WhatsApp's servers) is what the tests cannot reach.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from neonize.proto import Neonize_pb2 as neonize

Handler = Callable[[Any, Any], None]


class Subscriptions:
    """`client.event`: a decorator per event type, and `qr` for the codes."""

    def __init__(self) -> None:
        self.handlers: dict[type[Any], Handler] = {}
        self.on_qr: Callable[[Any, bytes], None] | None = None

    def qr(self, callback: Callable[[Any, bytes], None]) -> None:
        self.on_qr = callback

    def execute(self, uuid: Any, binary: Any, size: int, code: int) -> None:
        """Go's entry for every event it reports, which the worker watches."""

    def __call__(self, event_type: type[Any]) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.handlers[event_type] = handler
            return handler

        return register


class GoStandIn:
    def __init__(self, name: str = "unset", uuid: str = "") -> None:
        self.name = name
        self.uuid = uuid
        self.jid: Any = None
        self.new_device = False
        self.event = Subscriptions()
        self._stop_finalizer = SimpleNamespace(detach=lambda: None)
        self.connects = 0
        self.stops = 0
        self._context = threading.Event()

    def connect(self, _proxy: Any = None) -> None:
        self.connects += 1
        context = self._context = threading.Event()
        # Go's first report once past its maps (`me`): the worker lets other calls go.
        self.event.execute(self.uuid, None, 0, 0)
        self.on_connect()
        context.wait()

    def on_connect(self) -> None:
        """What Go reports once its connect call is under way (nothing: no route)."""

    def stop(self) -> None:
        self.stops += 1
        self._context.set()


class LinkedGoStandIn(GoStandIn):
    """A linked device whose connection comes up at once, as whatsmeow reports it."""

    def on_connect(self) -> None:
        from neonize.events import ConnectedEv

        self.event.handlers[ConnectedEv](self, ConnectedEv())

    def get_me(self) -> Any:
        me = neonize.JID(User="15550123456", Server="s.whatsapp.net", Device=7, Integrator=0)
        return SimpleNamespace(JID=me, PushName="")
