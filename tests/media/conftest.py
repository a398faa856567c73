"""Fixtures of the media tests: a store per test, a loopback HTTP server.

- `s3_server`, `s3_bucket`: a real S3 server and a bucket of the test (tests/fixtures/s3.py).
- `store`: the media store of the test, `local` (files under STORAGE_PATH) or `s3`
  (the bucket above); it gives the settings for the app and lists what is stored.
- `loopback`: an aiohttp server on 127.0.0.1 that records webhook deliveries and serves
  media files (also a 404 and a slow answer) for `{media: {url}}` sends.
- `media_apps`: starts apps on the test's database and store; stops them at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.fixtures.app import Api, AppFactory
from tests.fixtures.s3 import S3Server
from tests.fixtures.server import free_port

# ---------------------------------------------------------------------------- media store


@dataclass
class MediaStore:
    """Where the app under test keeps media, and a way to list what is there."""

    kind: str  # "local" or "s3"
    root: Path  # STORAGE_PATH (used by local storage only)
    s3: S3Server | None = None
    bucket: str | None = None

    def settings(self, **overrides: Any) -> dict[str, Any]:
        values: dict[str, Any] = {"storage_type": self.kind, "storage_path": self.root}
        if self.kind == "s3":
            assert self.s3 is not None
            values.update(
                s3_endpoint=self.s3.endpoint,
                s3_bucket=self.bucket,
                s3_access_key_id=self.s3.access_key,
                s3_secret_access_key=self.s3.secret_key,
                s3_region=self.s3.region,
                s3_force_path_style=True,
            )
        values.update(overrides)
        return values

    def objects(self) -> set[str]:
        """Every stored object (local: every file under the root, as a relative path)."""
        if self.kind == "local":
            if not self.root.exists():
                return set()
            return {
                p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()
            }
        assert self.s3 is not None
        assert self.bucket is not None
        client = self.s3.client()
        keys: set[str] = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys.update(o["Key"] for o in page.get("Contents", []))
        return keys

    def read(self, key: str) -> bytes:
        if self.kind == "local":
            return (self.root / key).read_bytes()
        assert self.s3 is not None
        body: bytes = self.s3.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, app_factory: AppFactory) -> MediaStore:
    root = app_factory.data_dir / "media"
    if request.param == "local":
        return MediaStore("local", root)
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return MediaStore("s3", root, s3=server, bucket=bucket)


@pytest.fixture
def local_store(app_factory: AppFactory) -> MediaStore:
    return MediaStore("local", app_factory.data_dir / "media")


@pytest.fixture
def s3_store(app_factory: AppFactory, s3_server: S3Server, s3_bucket: str) -> MediaStore:
    return MediaStore("s3", app_factory.data_dir / "media", s3=s3_server, bucket=s3_bucket)


# ---------------------------------------------------------------------------- loopback HTTP


@dataclass
class Hook:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Loopback:
    """Webhook receiver (`/hook`) and media server (`/files/...`, `/slow/...`, `/redirect`)."""

    port: int = field(default_factory=free_port)
    hooks: list[Hook] = field(default_factory=list)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)
    slow_s: float = 3.0
    _runner: web.AppRunner | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hook_url(self) -> str:
        return f"{self.base}/hook"

    def serve(self, name: str, content: bytes, content_type: str) -> str:
        """Serve `content` at a URL; the URL."""
        self.files[name] = (content, content_type)
        return f"{self.base}/files/{name}"

    def slow_url(self, name: str) -> str:
        return f"{self.base}/slow/{name}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        app.router.add_get("/files/{name}", self._file)
        app.router.add_get("/slow/{name}", self._slow)
        app.router.add_get("/redirect", self._redirect)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True).start()
        self._runner = runner

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _hook(self, request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.hooks.append(Hook(request.path, headers, await request.read()))
        return web.Response(status=204)

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.fetched.append(name)
        if name not in self.files:
            return web.Response(status=404, text="no such file")
        content, content_type = self.files[name]
        return web.Response(body=content, content_type=content_type)

    async def _redirect(self, request: web.Request) -> web.Response:
        self.fetched.append("redirect")
        raise web.HTTPFound(request.query["to"])

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.fetched.append(name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self.slow_s)
        content, content_type = self.files.get(name, (b"late", "text/plain"))
        return web.Response(body=content, content_type=content_type)


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    server = Loopback()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# ---------------------------------------------------------------------------- apps


FAST: dict[str, Any] = {
    "webhook_allow_private": True,
    "webhook_backoff_base_s": 0.05,
    "webhook_backoff_max_s": 0.2,
    "webhook_timeout_s": 5.0,
    "mock_auth_delay_ms": 100,
}


class MediaApps:
    """Starts apps on the test's database with a media store; stops what is left."""

    def __init__(self, factory: AppFactory) -> None:
        self.factory = factory
        self._running: list[tuple[Api, Any]] = []

    async def start(self, store: MediaStore, **overrides: Any) -> Api:
        api, manager = await self.factory.start(**store.settings(**{**FAST, **overrides}))
        self._running.append((api, manager))
        return api

    async def close(self) -> None:
        while self._running:
            await AppFactory.stop(*self._running.pop())


@pytest.fixture
async def media_apps(loopback: Loopback, app_factory: AppFactory) -> AsyncIterator[MediaApps]:
    # Depends on `loopback` so that apps stop before the loopback server does.
    apps = MediaApps(app_factory)
    try:
        yield apps
    finally:
        await apps.close()
        # obstore may abort at interpreter exit unless the loop gets a moment.
        await asyncio.sleep(0.05)
