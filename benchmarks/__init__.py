"""Benchmarks of stream-ingest against boto3's upload_file (see benchmarks/__main__.py)."""
