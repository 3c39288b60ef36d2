"""Log lines grouped into templates with Drain (drain3): `upload of video 97 failed: 502` becomes
`upload of video <*> failed: <*>`, at most a limit of patterns, each under a stable id."""

from __future__ import annotations

import hashlib
import math
import re

# This module alone reaches into drain3's tree (a lookup that adds nothing, a tree rebuilt from saved
# templates): pyproject.toml keeps drain3 below its next major while it does.
from drain3.drain import Drain, LogCluster

from exporter.logs.parse import LEVELS, line_time_seconds

# Values that vary between lines of one kind, masked before mining so that the first line of a
# kind already gives a template: uuids, hex ids (references, hashes), quoted values, numbers.
MASK = re.compile(
    r"(?<![\w.])(?:"
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b"
    r"|[-+]?\d+(?:[.:,]\d+)*(?:[a-zA-Z]{1,3}\b|%|\b)"  # with a unit: 1.5s, 200ms, 3%
    r")"
    r"|\"[^\"]*\"|'[^']*'"
)
WILDCARD = "<*>"
PATTERN_ID = re.compile(r"[0-9a-f]{8}")
MINED_CHARS = 1000  # a message is mined on its start: templates (and the state file) stay small
OTHER = "other"
_CACHE_ENTRIES = 10_000  # per cache and source: memory stays bounded whatever the log holds


def masked(message: str) -> str:
    """The message as Drain mines it: cut, variable values replaced by <*>."""
    text = MASK.sub(WILDCARD, message[:MINED_CHARS]).strip()
    return text or "<empty>"


def new_pattern_id(level: str, template: str, taken) -> str:
    """8 hex digits of a hash of the level and the first template: the same kind gets the same id after
    the state was lost, another kind another id; on a collision, the next link of the hash chain."""
    digest = hashlib.sha256(f"{level}\n{template}".encode()).hexdigest()
    while digest[:8] in taken:
        digest = hashlib.sha256(digest.encode()).hexdigest()
    return digest[:8]


class Pattern:
    """One template of one level: a Drain cluster with the id it is published under."""

    __slots__ = ("id", "level", "cluster", "first_seen", "lines")

    def __init__(self, pattern_id: str, level: str, cluster: LogCluster, first_seen: float | None, lines: int = 0):
        self.id = pattern_id
        self.level = level
        self.cluster = cluster
        self.first_seen = first_seen
        self.lines = lines

    @property
    def template(self) -> str:
        return self.cluster.get_template()


class Patterns:
    """The patterns of one source: one Drain per level, at most `limit` patterns in all.

    Levels below error may take only three quarters of the limit, so a chatty info log cannot
    leave no room for a new kind of error. Past the limit, lines that fit no pattern count as other.
    Ids come from new_pattern_id: an id is never given to another template, even after the state was lost.
    """

    def __init__(self, limit: int | None, clock=None, saved: dict | None = None):
        self.limit = limit
        self._clock = clock
        self._miners: dict[str, Drain] = {}
        self._by_cluster: dict[tuple[str, int], Pattern] = {}
        self.patterns: dict[str, Pattern] = {}
        self.other = {level: 0 for level in LEVELS}
        self._below_error = 0
        self._raw_cache: dict[tuple[str, str], Pattern | None] = {}
        self._cache: dict[tuple[str, str], Pattern | None] = {}
        if saved:
            self._restore(saved)

    def _miner(self, level: str) -> Drain:
        miner = self._miners.get(level)
        if miner is None:
            miner = self._miners[level] = Drain(depth=4, sim_th=0.5, max_children=100, param_str=WILDCARD)
        return miner

    def add(self, level: str, message: str, when: object = None) -> Pattern | None:
        """Count one line; returns its pattern, or None when it counted under other."""
        key = (level, message[:MINED_CHARS])
        pattern = self._raw_cache.get(key, self)
        if pattern is self:
            text = masked(message)
            pattern = self._cache.get((level, text), self)
            if pattern is self:
                pattern = self._mine(level, text, when)
                if len(self._cache) >= _CACHE_ENTRIES:
                    self._cache.clear()
                self._cache[(level, text)] = pattern
            if len(self._raw_cache) >= _CACHE_ENTRIES:
                self._raw_cache.clear()
            self._raw_cache[key] = pattern
        if pattern is None:
            self.other[level] += 1
        else:
            pattern.lines += 1
        return pattern

    def _room(self, level: str) -> bool:
        if self.limit is None:
            return True
        if len(self.patterns) >= self.limit:
            return False
        return level in ("error", "critical") or self._below_error < self.limit - self.limit // 4

    def _mine(self, level: str, text: str, when: object) -> Pattern | None:
        miner = self._miner(level)
        if not self._room(level):
            tokens = miner.get_content_as_tokens(text)
            if miner.tree_search(miner.root_node, tokens, miner.sim_th, False) is None:
                return None
        cluster, change = miner.add_log_message(text)
        if change != "cluster_created":
            return self._by_cluster[(level, cluster.cluster_id)]
        return self._publish(level, cluster, self._first_seen(when))

    def _first_seen(self, when: object) -> float | None:
        """The line's own time (a backlog read late is not new), never later than now."""
        written = line_time_seconds(when) if when is not None else None
        now = self._clock() if self._clock else None
        if now is None or written is None:
            return written if now is None else now
        return min(written, now)

    def _publish(self, level: str, cluster: LogCluster, first_seen: float | None, pattern_id: str | None = None):
        if pattern_id is None:
            pattern_id = new_pattern_id(level, cluster.get_template(), self.patterns)
        pattern = Pattern(pattern_id, level, cluster, first_seen)
        self.patterns[pattern_id] = pattern
        self._by_cluster[(level, cluster.cluster_id)] = pattern
        if level not in ("error", "critical"):
            self._below_error += 1
        return pattern

    def state(self) -> dict:
        return {"patterns": [{"id": p.id, "level": p.level, "template": p.template, "first_seen": p.first_seen,
                              "lines": p.lines} for p in self.patterns.values()],
                "other": dict(self.other)}

    def _restore(self, saved: dict) -> None:
        """Rebuild each level's Drain tree from the saved templates, in the order they were created."""
        entries = saved["patterns"]
        if not isinstance(entries, list):
            raise ValueError("patterns is not a list")
        for entry in entries[: self.limit]:  # a lowered limit keeps the oldest patterns
            pattern_id, level, template = str(entry["id"]), entry["level"], entry["template"]
            first_seen, lines = entry["first_seen"], int(entry["lines"])
            if not PATTERN_ID.fullmatch(pattern_id) or level not in LEVELS or not isinstance(template, str) \
                    or not template.split() or lines < 0:
                raise ValueError(f"pattern {pattern_id!r} is not valid")
            if first_seen is not None and not (isinstance(first_seen, (int, float)) and math.isfinite(first_seen)):
                raise ValueError(f"pattern {pattern_id!r} has no valid first_seen")
            if pattern_id in self.patterns:
                raise ValueError(f"pattern {pattern_id!r} appears twice")
            miner = self._miner(level)
            miner.clusters_counter += 1
            cluster = LogCluster(template.split(), miner.clusters_counter)
            miner.id_to_cluster[cluster.cluster_id] = cluster
            miner.add_seq_to_prefix_tree(miner.root_node, cluster)
            self._publish(level, cluster, first_seen, pattern_id).lines = lines
        other = saved.get("other", {})
        self.other = {level: int(other.get(level, 0)) for level in LEVELS}
