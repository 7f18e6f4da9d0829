"""Entrypoint of the `janitor` deployment: orphaned uploads and streams whose run is gone."""

from stream_ingest.flows.janitor import janitor

__all__ = ["janitor"]
