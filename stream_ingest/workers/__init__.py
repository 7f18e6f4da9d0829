"""Worker types of stream-ingest, registered with Prefect through the
`prefect.collections` entry point, so `prefect worker start --type
stream-ingest-warm` and `prefect work-pool create --type stream-ingest-warm` find
them. See warm.py for what the warm worker does and does not do.
"""

from stream_ingest.workers.warm import WarmWorker

__all__ = ["WarmWorker"]
