"""The deployments' entrypoints (prefect.yaml names `flows/ingest.py:stream_ingest` and
`flows/janitor.py:janitor`). The flows themselves live in `stream_ingest.flows`, the one
package a `pip install` adds; these files stay here, beside prefect.yaml, where `prefect
deploy` and a Prefect user look for them, and only re-export."""
