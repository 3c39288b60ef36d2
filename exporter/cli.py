"""`opsmon-exporter`: flags in the Prometheus style, config check, serving, and reload on SIGHUP."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from exporter import __version__, logtool
from exporter.collectors import REGISTRY
from opsmon import cli as opsmon_cli
from opsmon.config import DEFAULT_CONFIG_FILE, InvalidConfig
from exporter.service import Exporter
from exporter.web import make_app
from opsmon.http import serve

log = logging.getLogger("exporter")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="opsmon-exporter", description=__doc__,
        epilog="Log analysis on a terminal: opsmon-exporter logs report FILE... [--since 1h] [--level error] "
               "[--json]; opsmon-exporter logs find REFERENCE FILE... (see opsmon-exporter logs --help).")
    parser.add_argument("--config.file", dest="config_file", default=DEFAULT_CONFIG_FILE,
                        help="the opsmon YAML config (default: %(default)s)")
    parser.add_argument("--config.check", dest="config_check", action="store_true",
                        help="check the config as `opsmon check` does (paths, the database, every query against "
                             "its schema) and exit: 0 when valid, 2 when not")
    parser.add_argument("--web.listen-address", dest="listen_address",
                        help="host:port to serve on (default: exporter.listen_address of the config)")
    parser.add_argument("--log.level", dest="log_level", default="info",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--version", action="version", version=f"opsmon-exporter {__version__}")
    for name in REGISTRY:
        parser.add_argument(f"--collector.{name}", dest=f"collector_{name}", default=True,
                            action=argparse.BooleanOptionalAction, help=f"the {name} collector (default: on)")
    return parser.parse_args(argv)


def _credentials(web) -> tuple[str, str] | None:
    if web.basic_auth_username is None:
        return None
    return web.basic_auth_username, web.basic_auth_password_file.read_text().rstrip("\n")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["logs"]:  # a command of its own; serving keeps its flags exactly as they were
        return logtool.main(argv[1:])
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    enabled = {name for name in REGISTRY if getattr(args, f"collector_{name}")}
    if args.config_check:
        return opsmon_cli.check(args.config_file)
    try:
        exporter = Exporter(args.config_file, enabled)
    except InvalidConfig as err:
        print(err, file=sys.stderr)
        return 2

    web = exporter.config.exporter.web
    tls = (str(web.tls_cert_file), str(web.tls_key_file)) if web.tls_cert_file else None
    address = args.listen_address or exporter.config.exporter.listen_address
    try:
        server = serve(make_app(exporter, _credentials(web)), address, tls)
    except OSError as err:
        print(f"--web.listen-address {address}: cannot listen: {err.strerror}", file=sys.stderr)
        return 1
    # Signals are taken by sigwait in this thread, never by a handler that could interrupt a lock
    # holder; the mask is set before the HTTP thread starts so that thread inherits it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP, signal.SIGTERM, signal.SIGINT})
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.info("opsmon-exporter %s serving on %s://%s with collectors %s", __version__,
             "https" if tls else "http", address, ", ".join(exporter.collector_names))
    while signal.sigwait({signal.SIGHUP, signal.SIGTERM, signal.SIGINT}) == signal.SIGHUP:
        exporter.reload()
    server.shutdown()
    exporter.close()
    log.info("stopped")
    return 0
