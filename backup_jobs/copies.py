"""The 3-2-1 copies: each verified backup copied to a second folder (another disk) and an S3-compatible
bucket offsite, read back and hashed after upload, and pruned with the local catalog."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from opsmon import files
from opsmon.catalog import BACKUP_SUFFIX, MANIFEST_SUFFIX, TIERS, BackupRecord, Catalog, own_file_name
from opsmon.config import OffsiteConfig
from backup_jobs.gzipfile import CHUNK
from backup_jobs.humanize import progress_bar

log = logging.getLogger(__name__)


class CopyFailed(Exception):
    pass


def _key(record: BackupRecord, suffix: str) -> str:
    return f"{record.tier}/{record.id}{suffix}"


class FolderCopies:
    """Copies in a folder: the same layout as the backup directory."""

    name = "secondary"

    def __init__(self, root: Path):
        self.root = Path(root)

    def keys(self) -> set[str]:
        return {str(p.relative_to(self.root)) for p in self.root.glob("*/*") if not p.name.startswith(".")}

    def put(self, source: Path, key: str) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.unlink(missing_ok=True)  # a link planted at that name goes, and is never written through
        with open(source, "rb") as src, open(partial, "wb") as out, \
                progress_bar(f"copy {key} to {self.name}", Path(source).stat().st_size) as bar:
            while chunk := src.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
        files.fsync_dir(target.parent)

    def sha256(self, key: str) -> str:
        path = self.root / key
        with open(path, "rb") as file, progress_bar(f"read back {key} from {self.name}", path.stat().st_size) as bar:
            return _hash(file, bar)

    def fetch(self, key: str, target: Path) -> None:
        """Copy one object out to `target` (a drill restores from what the location holds, nothing else)."""
        source = self.root / key
        with open(source, "rb") as src, open(target, "wb") as out, \
                progress_bar(f"fetch {key} from {self.name}", source.stat().st_size) as bar:
            while chunk := src.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


class BucketCopies:
    """Copies in an S3-compatible bucket, under a prefix."""

    name = "offsite"

    def __init__(self, client, bucket: str, prefix: str):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    @classmethod
    def from_config(cls, offsite: OffsiteConfig) -> BucketCopies:
        import boto3  # only a kit with an offsite bucket pays for importing it

        credentials = {}
        if offsite.access_key_id_file:
            credentials = {"aws_access_key_id": offsite.access_key_id_file.read_text().strip(),
                           "aws_secret_access_key": offsite.secret_access_key_file.read_text().strip()}
        client = boto3.client("s3", endpoint_url=str(offsite.endpoint_url) if offsite.endpoint_url else None,
                              region_name=offsite.region, **credentials)
        return cls(client, offsite.bucket, offsite.prefix)

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def keys(self) -> set[str]:
        found = set()
        start = f"{self.prefix}/" if self.prefix else ""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            found.update(item["Key"][len(start):] for item in page.get("Contents", []))
        return found

    def put(self, source: Path, key: str) -> None:
        with progress_bar(f"copy {key} to {self.name}", Path(source).stat().st_size) as bar:
            self.client.upload_file(str(source), self.bucket, self._object(key), Callback=bar.update)

    def sha256(self, key: str) -> str:
        """Read the object back and hash it: what is verified is what the bucket holds."""
        answer = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
        with progress_bar(f"read back {key} from {self.name}", answer.get("ContentLength")) as bar:
            return _hash(answer["Body"], bar)

    def fetch(self, key: str, target: Path) -> None:
        size = self.client.head_object(Bucket=self.bucket, Key=self._object(key))["ContentLength"]
        with progress_bar(f"fetch {key} from {self.name}", size) as bar:
            self.client.download_file(self.bucket, self._object(key), str(target), Callback=bar.update)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._object(key))


def _hash(stream, bar) -> str:
    hashing = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        hashing.update(chunk)
        bar.update(len(chunk))
    return hashing.hexdigest()


def _copied_by_opsmon(key: str) -> bool:
    tier, _, name = key.partition("/")
    return tier in TIERS and own_file_name(tier, name)


Location = FolderCopies | BucketCopies  # where copies of the backups are kept


def sync(location: Location, current: Catalog) -> tuple[int, int]:
    """Make `location` hold exactly the verified scheduled backups of the catalog.

    Missing copies are uploaded and read back; copies of backups the catalog no longer has are
    deleted, but never those of a manifest here that cannot be read (damaged, or of a newer format):
    a person must look at it first; nor a file whose name is not of opsmon's (someone else's). Raises CopyFailed when a copy does not read back as the
    manifest says. Returns (copied, deleted).
    """
    wanted = {r for r in current.backups if r.verified and r.tier in TIERS}
    present = location.keys()
    copied = 0
    for record in sorted(wanted, key=lambda r: r.started_at):
        backup_key, manifest_key = _key(record, BACKUP_SUFFIX), _key(record, MANIFEST_SUFFIX)
        if backup_key in present and manifest_key in present:
            continue
        location.put(record.path, backup_key)
        if location.sha256(backup_key) != record.sha256:
            location.delete(backup_key)
            raise CopyFailed(f"{location.name} copy of backup {record.id} does not read back as written")
        location.put(record.manifest_path, manifest_key)  # last: a copy without manifest is unfinished
        copied += 1
        log.info("copied backup %s to %s", record.id, location.name)
    keep = {_key(r, s) for r in wanted for s in (BACKUP_SUFFIX, MANIFEST_SUFFIX)}
    keep |= {f"{p.parent.name}/{p.name.removesuffix(MANIFEST_SUFFIX)}{s}" for p in current.unreadable
             for s in (BACKUP_SUFFIX, MANIFEST_SUFFIX)}
    stale = sorted(k for k in location.keys() if k not in keep and _copied_by_opsmon(k))
    # Manifests first, as locally: an interrupted prune leaves an unnamed file, never a dangling manifest.
    for key in sorted(stale, key=lambda k: not k.endswith(MANIFEST_SUFFIX)):
        location.delete(key)
    return copied, len([k for k in stale if k.endswith(BACKUP_SUFFIX)])
