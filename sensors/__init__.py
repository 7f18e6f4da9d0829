"""The file sensor: one run of the `stream-ingest` deployment per new recording.

Design
    watchdog observer (inotify, or polling for network mounts; `make_observer`)
      -> `EnqueueHandler`: filters paths (`FileFilter`, pure) and puts small frozen
         events (`FileAppeared`, `FileClosed`, `FileGone`, `DirGone`) on a queue.
         It does no I/O: dispatch holds the observer's lock.
      -> `Sensor.run`: one loop takes events off the queue and hands them to
         `StreamTrigger`, retrying with backoff (1 s doubling to 30 s, one log line
         per retry) while Redis or the Prefect API is down, so no event is lost.
    At start, and every few minutes, a scan of the folder treats every recording as
    just created; dedupe makes that idempotent.

Dedupe: one run per file incarnation, however many events and restarts. The
incarnation is the file identity "dev:ino". `CheckpointStore.claim_identity`
(HSETNX) lets one event create the stream; the run is created with the idempotency
key `stream-ingest:{stream_id}`, so a claim whose trigger was interrupted is
triggered again safely. Deleting or renaming a file releases its identity (inode
numbers are reused), and a rename starts a new stream for the new name.

What it creates
    Redis (through CheckpointStore, under the namespace STREAM_INGEST_REDIS_NAMESPACE):
    `stream:{id}:meta` (status detected, flow_run_id), `streams:all`,
    `streams:active`, `streams:by-identity`, and `hint:{sha1(path)}` (closed and
    deleted hints for the flow).
    Prefect: flow runs of STREAM_INGEST_DEPLOYMENT with parameters {path, stream_id};
    events `stream-ingest.file.detected|closed|deleted` on resource
    `stream-ingest.file.{dev:ino}`, related to the flow run.

Permissions it needs
    Read and list the watch folder (stat only; it never opens a file), and an inotify
    watch per subfolder (fs.inotify.max_user_watches). Redis: read and write keys
    under its namespace (HSETNX, HSET, HGET(ALL), HDEL, DEL, SADD/SREM, ZADD). Prefect
    API: read deployments, create flow runs, write events (no work pool access).

Entry point: `run_sensor(settings, stop_event=None)`; `stream-ingest sensor`.
"""

from sensors.events import DirGone, FileAppeared, FileClosed, FileFilter, FileGone, SensorEvent
from sensors.prefect_calls import RunRequest
from sensors.run import Sensor, run_sensor

__all__ = [
    "DirGone",
    "FileAppeared",
    "FileClosed",
    "FileFilter",
    "FileGone",
    "RunRequest",
    "Sensor",
    "SensorEvent",
    "run_sensor",
]
