"""`opsmon`: adopt the kit on an app of one's own: `init` writes a starter config, `check` finds what would fail,
`render` writes the rest of the stack."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from opsmon import __version__
from opsmon.checks import check_config
from opsmon.config import DEFAULT_CONFIG_FILE, InvalidConfig, load_config
from opsmon.exits import EXIT_OK, EXIT_USAGE
from opsmon.render import CannotRender, render
from opsmon.starter import CannotStart, write_starter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opsmon", description=__doc__)
    parser.add_argument("--config.file", dest="config_file", default=DEFAULT_CONFIG_FILE,
                        help="the opsmon YAML config (default: %(default)s)")
    parser.add_argument("--version", action="version", version=f"opsmon {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="write a starter config for an app's SQLite database (never overwrites)")
    init.add_argument("--database", required=True, type=Path, help="the app's SQLite database")
    init.add_argument("--log", type=Path, help="the app's log file")
    init.add_argument("--health-url", help="the app's health URL, probed by the exporter")
    init.add_argument("--out", type=Path, help="the file to write (default: --config.file)")
    check = commands.add_parser("check", help="every problem a service would trip over later, at once: exit 0, "
                                              "or 2 with each named by file and key")
    # Also after the command, as `opsmon check --config.file F` reads; SUPPRESS keeps the one given before it.
    check.add_argument("--config.file", dest="config_file", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    rendering = commands.add_parser("render", help="write Prometheus, Alertmanager and Grafana provisioning files "
                                                   "and systemd units from the config's stack: section")
    rendering.add_argument("--out", required=True, type=Path, help="the folder to write them in")
    rendering.add_argument("--config.file", dest="config_file", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def init(args) -> int:
    out = args.out or Path(args.config_file)
    try:
        write_starter(out, args.database, args.log, args.health_url)
    except CannotStart as err:
        print(f"opsmon init: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {out}; next: opsmon --config.file {out} check")
    return EXIT_OK


def check(config_file: str) -> int:
    """What `opsmon check` and `opsmon-exporter --config.check` print and return."""
    try:
        config = load_config(config_file)
    except InvalidConfig as err:
        print(err, file=sys.stderr)
        return EXIT_USAGE
    findings = check_config(config)
    for finding in findings:
        print(finding.line(config_file), file=sys.stderr)
    if any(not finding.warning for finding in findings):
        return EXIT_USAGE
    print(f"{config_file}: valid")
    return EXIT_OK


def render_stack(config_file: str, out: Path) -> int:
    try:
        written = render(load_config(config_file), Path(config_file), out)
    except (InvalidConfig, CannotRender) as err:
        print(f"opsmon render: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        print(f"opsmon render: {err.filename}: {err.strerror}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {len(written)} files under {out}")
    return EXIT_OK


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "init":
        return init(args)
    if args.command == "render":
        return render_stack(args.config_file, args.out)
    return check(args.config_file)
