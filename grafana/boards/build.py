"""Every board, rendered to the JSON Grafana provisions from grafana/dashboards/."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from grafana.boards import application, backups, business, exporter, external_services, logs, overview, system

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"
BOARDS = (overview, system, application, logs, business, backups, external_services, exporter)


def render(board) -> str:
    """The dashboard as committed: keys sorted, two-space indents, a final newline, so diffs stay small."""
    return json.dumps(board.build().build(), cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered() -> dict[str, str]:
    """File name (without .json) to the text it should hold."""
    return {board.FILE: render(board) for board in BOARDS}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in rendered().items():
        path = DASHBOARDS / f"{name}.json"
        if not path.exists() or path.read_text() != text:
            stale.append(path.name)
            if not check:
                path.write_text(text)
    if check and stale:
        print("out of date (run python -m grafana.boards):", ", ".join(stale), file=sys.stderr)
        return 1
    print(("differ: " if check else "written: ") + (", ".join(stale) or "none"))
    return 0
