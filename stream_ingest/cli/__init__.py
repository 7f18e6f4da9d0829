"""`stream-ingest`: the console script, built with typer and rich like Prefect's own.

    stream-ingest dev [--watch DIR]          the whole product on this machine
    stream-ingest sensor [--watch DIR]       watch the folder, trigger one run per video
    stream-ingest blocks register            save the blocks from STREAM_INGEST_* settings
    stream-ingest streams list|show|rerun    inspect and rerun streams
    stream-ingest streams watch [--json]     live lag of every active stream (q quits)
    stream-ingest streams prune [--dry-run]  drop streams that ended past the retention
    stream-ingest streams salvage|abort ID   keep a failed stream's parts as
                                             `<stem>.partial<ext>`, or discard them
    stream-ingest automations apply|remove   the alerts: Prefect automations that notify
                                             the config's alert_block
    stream-ingest doctor                     check settings, S3, Redis, Prefect, folder

Every command but `blocks register` and `dev` reads the IngestConfig block named by
`--config` (or STREAM_INGEST_CONFIG_BLOCK, default "stream-ingest") from the Prefect
API; in a folder where `dev` runs, its prefect.toml points there.
"""
