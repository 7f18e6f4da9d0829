"""The file sensor's entrypoint: `python -m sensors [--watch DIR]` is `stream-ingest
sensor` (the config block's name from STREAM_INGEST_CONFIG_BLOCK, as for the command).
The sensor lives in `stream_ingest.sensors`; this folder only starts it."""
