"""Loopback proxies for the engine tests: where a real engine's connection attempt ends.

- `RecordingProxy` answers HTTP `CONNECT` with 502 and SOCKS5 requests with "refused",
  after writing down the host and port the engine asked for.
- `SilentProxy` accepts and never answers: the engine's dial waits (whatsmeow: 60 s),
  so a session stays quietly "connecting" while a test drives it with built events. It
  writes down each request line too: one per dial; and counts the dials the engine
  gave up (closed its end). With `tunnel`, it answers `CONNECT` (200) first and is
  silent after: the engine's TLS handshake waits on a connection that is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field


@dataclass
class RecordingProxy:
    requests: list[str] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> RecordingProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readexactly(1)
            if first == b"\x05":
                await self._socks5(reader, writer)
            else:
                line = first + await reader.readline()
                self.requests.append("http " + line.decode(errors="replace").strip())
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _socks5(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (methods,) = await reader.readexactly(1)
        await reader.readexactly(methods)
        writer.write(b"\x05\x00")  # no authentication
        _version, command, _reserved, kind = await reader.readexactly(4)
        if kind == 3:  # a host name: the proxy resolves it, as socks5h does
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode()
        elif kind == 1:
            host = ".".join(str(b) for b in await reader.readexactly(4))
        else:
            host = (await reader.readexactly(16)).hex()
        (port,) = struct.unpack(">H", await reader.readexactly(2))
        self.requests.append(f"socks5 {command} {host}:{port}")
        writer.write(b"\x05\x05\x00\x01" + bytes(4) + bytes(2))  # connection refused
        await writer.drain()


@dataclass
class SilentProxy:
    server: asyncio.Server | None = None
    held: list[asyncio.StreamWriter] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    ended: int = 0
    tunnel: bool = False

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> SilentProxy:
        self.server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        return self

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.held.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            line = await reader.readline()
            if line:
                self.requests.append(line.decode(errors="replace").strip())
            if self.tunnel:
                await reader.readuntil(b"\r\n\r\n")  # the request's headers
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            while await reader.read(65536):
                pass  # the rest of the request; never an answer
            self.ended += 1

    async def close(self) -> None:
        for writer in self.held:
            with contextlib.suppress(Exception):
                writer.close()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
