# One image for opsmon's Python parts: the exporter, the backup service and the demo app.
FROM python:3.11.10-slim-bookworm

# sqlite3 for people who exec in to look at the database; nothing else from Debian is needed.
RUN apt-get update && apt-get install -y --no-install-recommends sqlite3 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY exporter ./exporter
COPY backup_jobs ./backup_jobs
COPY demo ./demo
RUN pip install --no-cache-dir .

RUN useradd --uid 10001 --create-home opsmon && mkdir -p /data /backups && chown opsmon /data /backups
USER opsmon
