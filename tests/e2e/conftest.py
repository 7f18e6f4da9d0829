"""End-to-end fixtures: everything runs as real processes, driven by the same
commands the README gives; the test process only talks HTTP to them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.stack import product_env


@pytest.fixture
def e2e_env(tmp_path: Path, redis_server, moto_server, bucket_name, namespace) -> dict[str, str]:
    return product_env(tmp_path, redis_server.url, moto_server.url, bucket_name, namespace)
