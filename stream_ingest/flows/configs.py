"""The IngestConfig blocks of this process's runs, built once per change.

A warm worker's runs each load their block as they start, and the bandwidth limit
follows it while they upload: built every time, a block cost some 60 ms of CPU (a
Prefect client with its TLS context, the JSON schema, a Redis client with new
connections), twenty at once in a burst of new recordings. Here a load is one read
of the stored document's digest, and a block is built only when its document
changed (stream_ingest/blocks/reload.py); the runs that name it share it.
"""

from __future__ import annotations

from stream_ingest.blocks import config as blocks_config
from stream_ingest.blocks.config import IngestConfig
from stream_ingest.blocks.reload import Configs


def _build(name: str) -> IngestConfig:
    return blocks_config.load_config(name)


CONFIGS = Configs(_build)


def read_config(name: str) -> IngestConfig:
    """The block `name` as stored now: built again only if it changed since the
    process last built it."""
    return CONFIGS(name)
