"""`STREAMS_PER_KEY` across instances: two registries (two instances) sharing the real
Redis hold a key to its cap together; a closed stream frees its slot everywhere; with
Redis down each instance still holds its own cap."""

from __future__ import annotations

import secrets

import pytest

from openwa.cluster.stream_slots import RedisStreamSlots
from openwa.errors import TooManyStreams
from openwa.events.streams import StreamRegistry
from tests.fixtures.redis import DEAD_REDIS, LOCAL_REDIS, require_redis


async def test_a_keys_streams_are_capped_across_instances() -> None:
    await require_redis()
    namespace = f"openwa:test-streams:{secrets.token_hex(4)}:"
    slots = [RedisStreamSlots(LOCAL_REDIS, namespace) for _ in range(2)]
    a, b = (StreamRegistry(per_key=2, total=10, shared=s) for s in slots)
    try:
        first = await a.open_live("key_1")
        await b.open_live("key_1")
        with pytest.raises(TooManyStreams) as refused:
            await b.open_live("key_1")
        assert refused.value.details == {"limit": 2, "scope": "key"}
        assert b.count("key_1") == 1  # the refused one holds nothing here either
        await a.open_live("key_2")  # other keys count apart

        first.release()
        for _ in range(100):  # the slot is given back right after the release
            try:
                await b.open_live("key_1")
                break
            except TooManyStreams:
                continue
        assert b.count("key_1") == 2
    finally:
        await a.close()
        await b.close()


async def test_with_redis_down_each_instance_keeps_its_own_cap() -> None:
    registry = StreamRegistry(per_key=1, total=10, shared=RedisStreamSlots(DEAD_REDIS, "x:"))
    try:
        await registry.open_live("key_1")
        with pytest.raises(TooManyStreams):
            await registry.open_live("key_1")
    finally:
        await registry.close()
