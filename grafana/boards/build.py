"""Every board, rendered to the JSON Grafana provisions from grafana/dashboards/ (the demo's from demo/dashboards/)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from grafana.boards import application, backups, demo, exporter, external_services, logs, overview, system

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"
# The kit's boards in grafana/dashboards/, and the demo's in a folder of its own (its FOLDER). The business
# board is rendered from each config by `opsmon render` (opsmon/boards.py).
BOARDS = (overview, system, application, logs, backups, external_services, exporter, demo)


def render(board) -> str:
    """The dashboard as committed: keys sorted, two-space indents, a final newline, so diffs stay small."""
    return json.dumps(board.build().build(), cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def path_of(board) -> Path:
    return getattr(board, "FOLDER", DASHBOARDS) / f"{board.FILE}.json"


def rendered() -> dict[Path, str]:
    """Each board's file to the text it should hold."""
    return {path_of(board): render(board) for board in BOARDS}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, text in rendered().items():
        if not path.exists() or path.read_text() != text:
            stale.append(path.name)
            if not check:
                path.write_text(text)
    if check and stale:
        print("out of date (run python -m grafana.boards):", ", ".join(stale), file=sys.stderr)
        return 1
    print(("differ: " if check else "written: ") + (", ".join(stale) or "none"))
    return 0
