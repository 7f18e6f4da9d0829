"""Fixtures of the model: a Redis of its own that it can restart with and without its
data, and the flow runs as cheap as the engine allows them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from stream_ingest.devstack.services import RedisServer


class RestartableRedis:
    """A private redis-server with an append-only file (fsync always), restarted on
    the same port and folder: with its data, or with its files deleted first."""

    def __init__(self) -> None:
        self.server = RedisServer(persist=True)
        self.server.start()

    @property
    def url(self) -> str:
        return self.server.url

    def restart(self, keep_data: bool) -> None:
        old = self.server
        old.stop()
        if not keep_data:
            for name in os.listdir(old.workdir):
                if name != os.path.basename(old.log_path):
                    target = os.path.join(old.workdir, name)
                    if os.path.isdir(target):
                        shutil.rmtree(target)
                    else:
                        os.unlink(target)
        self.server = RedisServer(port=old.port, workdir=old.workdir, persist=True)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def restartable_redis() -> Iterator[RestartableRedis]:
    redis = RestartableRedis()
    yield redis
    redis.stop()


@pytest.fixture
def redis_server(restartable_redis: RestartableRedis) -> RestartableRedis:
    """Overrides the session's Redis: the settings (and so the blocks) point here."""
    return restartable_redis
