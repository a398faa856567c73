"""The engines this instance can run sessions on, by name."""

from __future__ import annotations

from collections.abc import Iterator

from openwa.engines.base import Engine
from openwa.errors import NotSupported


class EngineRegistry:
    def __init__(self, engines: list[Engine], default: str) -> None:
        self._engines = {engine.name: engine for engine in engines}
        if default not in self._engines:
            raise ValueError(f"default engine {default!r} is not registered")
        self.default = default

    def get(self, name: str) -> Engine:
        engine = self._engines.get(name)
        if engine is None:
            raise NotSupported(
                f"engine {name!r} is not available on this instance",
                details={
                    "engine": name,
                    "capability": "engine",
                    "available": sorted(self._engines),
                },
            )
        return engine

    def names(self) -> list[str]:
        return sorted(self._engines)

    def __iter__(self) -> Iterator[Engine]:
        return iter(self._engines.values())

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.close()
