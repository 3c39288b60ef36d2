"""The demo's SQLite schema, connections and bulk seeding."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'processed', 'failed')),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS videos_status ON videos (status);
-- The three tables below record the pipeline's events. The events are counted where they happen
-- (demo/business.py): a restore or a delete removes rows, and a count of rows would drop.
CREATE TABLE IF NOT EXISTS processed_videos (
    id INTEGER PRIMARY KEY,
    video_id INTEGER NOT NULL REFERENCES videos (id),
    processed_at REAL NOT NULL,
    duration_seconds REAL NOT NULL CHECK (duration_seconds >= 0)
);
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY,
    video_id INTEGER NOT NULL REFERENCES videos (id),
    approved_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS monetizations (
    id INTEGER PRIMARY KEY,
    video_id INTEGER NOT NULL REFERENCES videos (id),
    monetized_at REAL NOT NULL,
    revenue_cents INTEGER NOT NULL CHECK (revenue_cents >= 0)
);
"""


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, foreign keys on."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.row_factory = sqlite3.Row
    return connection


def create_schema(path: str | Path) -> None:
    connection = connect(path)
    try:
        connection.executescript(SCHEMA)
    finally:
        connection.close()


def seed(path: str | Path, videos: int, batch: int = 50_000, rng: random.Random | None = None) -> None:
    """Fill the database with `videos` processed videos and their approvals and monetizations."""
    rng = rng or random.Random(1)
    create_schema(path)
    connection = connect(path)
    now = time.time()
    try:
        start = (connection.execute("SELECT coalesce(max(id), 0) FROM videos").fetchone()[0]) + 1
        for first in range(start, start + videos, batch):
            ids = range(first, min(first + batch, start + videos))
            connection.execute("BEGIN")
            connection.executemany("INSERT INTO videos VALUES (?, ?, 'processed', ?, ?)",
                                   ((i, f"video {i}", now - 86400, now - 86400) for i in ids))
            connection.executemany("INSERT INTO processed_videos (video_id, processed_at, duration_seconds) "
                                   "VALUES (?, ?, ?)", ((i, now - 86400, rng.uniform(1, 30)) for i in ids))
            approved = [i for i in ids if rng.random() < 0.7]
            connection.executemany("INSERT INTO approvals (video_id, approved_at) VALUES (?, ?)",
                                   ((i, now - 86400) for i in approved))
            connection.executemany("INSERT INTO monetizations (video_id, monetized_at, revenue_cents) "
                                   "VALUES (?, ?, ?)",
                                   ((i, now - 86400, rng.randint(1, 500)) for i in approved if rng.random() < 0.3))
            connection.execute("COMMIT")
    finally:
        connection.close()
