"""Entrypoint of the `stream-ingest` deployment: one run per take of a recording."""

from stream_ingest.flows.ingest import stream_ingest

__all__ = ["stream_ingest"]
