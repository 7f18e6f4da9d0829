"""The file sensor: one run of the `stream-ingest` deployment per new recording.

Design
    watchdog observer (inotify, or polling for network mounts; `make_observer`)
      -> `EnqueueHandler`: filters paths (`FileFilter`, pure) and puts small frozen
         events (`FileAppeared`, `FileOpened`, `FileClosed`, `FileGone`, `DirGone`)
         on a queue.
         It does no I/O: dispatch holds the observer's lock.
      -> `Sensor.run`: one loop takes events off the queue and hands them to
         `StreamTrigger`, retrying with backoff (1 s doubling to 30 s, one log line
         per retry) while Redis or the Prefect API is down, so no event is lost.
    At start, and every few minutes, a scan of the folder treats every recording as
    just created (dedupe makes that idempotent) and releases the identities of files
    that are gone (`ReleaseGone`).

Dedupe: one run per take of a file incarnation, however many events and restarts.
The incarnation is the file identity "dev:ino:birth" (birth time from statx).
`store.identities.claim` (an optimistic WATCH/MULTI/EXEC transaction) lets one
event create the stream; the run is created with the idempotency key
`stream-ingest:{stream_id}`, so a claim whose trigger was interrupted is triggered
again safely. Deleting or renaming a file releases its identity, and a rename starts a
new stream for the new name. A known file opened, closed or scanned again is compared
with its stream (`stream_ingest.takes`): smaller than what was uploaded or completed is
a new take (`store.identities.rebind`: a new stream), a completed file that grew or changed
gets one revision run (key `stream-ingest:{id}:revision-{n}`), and a file whose stream
was aborted is a new stream.

Configuration: the IngestConfig block (`--config`, default "stream-ingest"), reloaded
every 10 s; `--watch DIR` overrides its watch folder for this host. Runs get the
block's name as their `config` parameter, so the flow reads the same block.

What it creates
    Redis (through the block's CheckpointStore, under its namespace):
    `stream:{id}:meta` (status detected, flow_run_id, watch_dir), `streams:all`,
    `streams:active`, `streams:by-identity`, and `hint:{sha1(path)}` (close hints).
    Prefect: flow runs of the block's deployment with parameters {path, stream_id,
    config}, or {stream_ids, config} for a batch of finished small files; events
    `stream-ingest.file.detected|closed|changed|deleted` on resource
    `stream-ingest.file.{identity}`, related to the flow run, and one
    `stream-ingest.batch.detected` per batch (stream_ingest/batch_events.py).

Permissions it needs
    Read and list the watch folder (stat and statx only; it never opens a file), and an inotify
    watch per subfolder (fs.inotify.max_user_watches). Redis: the commands listed in
    stream_ingest/blocks/checkpoints.py, on keys under its namespace. Prefect API: read blocks and
    deployments, create flow runs, write events (no work pool access).

Entry point: `run_sensor(config, watch)`; `stream-ingest sensor [--watch DIR]`.
"""

from stream_ingest.sensors.events import (
    DirGone,
    FileAppeared,
    FileClosed,
    FileFilter,
    FileGone,
    SensorEvent,
)
from stream_ingest.sensors.run import Sensor, run_sensor

__all__ = [
    "DirGone",
    "FileAppeared",
    "FileClosed",
    "FileFilter",
    "FileGone",
    "Sensor",
    "SensorEvent",
    "run_sensor",
]
