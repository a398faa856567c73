"""The webhook receiver core.py delivers to, as a process of its own.

`python benchmarks/receiver.py --port P` answers every `POST /hook/{tag}` with 204 after
reading the body, and `GET /stats/{tag}` with `{count, first, last}` (Unix times of the
first and last delivery to that tag). A tag per measurement keeps late arrivals of one
measurement out of the next.

Why a separate process: in the end-to-end row the benchmark's 32 posting clients run at
the same time as the deliveries arrive; in one process each would wait for the other's
turns on one event loop, and the receiver would look slower than it is (and the posting
too). On its own it gets the OS's scheduling like any real receiver, and the direct
baseline (an aiohttp loop in the benchmark process) reaches it the same way the server does.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from aiohttp import web


@dataclass
class Tally:
    count: int = 0
    first: float = 0.0
    last: float = 0.0


def create_app() -> web.Application:
    tallies: dict[str, Tally] = {}

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        now = time.time()
        tally = tallies.setdefault(request.match_info["tag"], Tally(first=now))
        tally.count += 1
        tally.last = now
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        tally = tallies.get(request.match_info["tag"], Tally())
        return web.json_response({"count": tally.count, "first": tally.first, "last": tally.last})

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook/{tag}", hook)
    app.router.add_get("/stats/{tag}", stats)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
