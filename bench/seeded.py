"""The demo databases the benchmarks run on, seeded once and kept under bench/data (git ignores it)."""

from __future__ import annotations

from pathlib import Path

from demo.db import seed

DATA = Path(__file__).resolve().parent / "data"


def database(videos: int) -> Path:
    """A demo database of `videos` processed videos (about 115 MB a million); seeding takes a while."""
    path = DATA / f"demo-{videos}.db"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        print(f"seeding {videos:,} videos into {path} (once; kept under bench/data) ...", flush=True)
        seed(path, videos)
    return path
