"""`python -m demo serve|seed`: run the demo app, or fill a database for benchmarks."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the demo app")
    serve.add_argument("--db", required=True, help="SQLite file (created when missing)")
    serve.add_argument("--listen", default="127.0.0.1:8080", help="host:port of the HTTP API")
    serve.add_argument("--workers", type=int, default=3, help="pipeline worker processes")
    serve.add_argument("--rate", type=float, default=5.0, help="videos queued per second by the traffic generator")
    serve.add_argument("--log-file", help="JSON-lines log (default: stderr)")
    serve.add_argument("--metrics-dir", required=True, help="prometheus_client multiprocess folder")
    serve.add_argument("--pidfile", help="write the main process id here")
    seed = commands.add_parser("seed", help="add processed videos to a database")
    seed.add_argument("--db", required=True)
    seed.add_argument("--videos", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    if args.command == "seed":
        from demo.db import seed as fill

        fill(args.db, args.videos)
        return 0
    # prometheus_client picks multiprocess mode when it is first imported: set the folder first.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.abspath(args.metrics_dir)
    from demo.app import run

    host, _, port = args.listen.rpartition(":")
    return run(args.db, host or "0.0.0.0", int(port), args.workers, args.rate, args.log_file, args.pidfile)


if __name__ == "__main__":
    sys.exit(main())
