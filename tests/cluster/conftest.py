"""Fixtures of the cluster tests.

- `cluster` (module): three real instances on one database, Redis and S3. Starting three
  servers costs seconds each on a busy machine, so the scenarios of test_cluster.py
  share one cluster and run in the module's order.
- `db`: a session factory on `postgres_url` (a migrated PostgreSQL database of one
  test), for `Ownership` services driven in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from openwa.db.engine import create_engine, create_session_factory
from tests.cluster.support import Cluster, Database
from tests.fixtures.databases import (
    create_pg_database,
    drop_pg_database,
    require_postgres,
)
from tests.fixtures.s3 import S3Server, new_bucket, remove_bucket


@pytest.fixture(scope="module")
def cluster(
    pg_template: str, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    require_postgres()
    name = create_pg_database(template=pg_template)
    bucket = new_bucket(s3_server)
    # Kept after the run (pytest keeps the last few): the instances' logs are there.
    directory = tmp_path_factory.mktemp("cluster")
    cluster = Cluster(Database(name), s3_server, bucket, directory)
    try:
        for instance in ("a", "b", "c"):
            cluster.add(instance)
        cluster.start("a", "b", "c")
        yield cluster
    finally:
        cluster.stop_all()
        drop_pg_database(name)
        remove_bucket(s3_server, bucket)


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine: AsyncEngine = create_engine(postgres_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()
