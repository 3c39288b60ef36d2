"""`opsmon-backup check`: integrity_check, foreign_key_check and business rules; `--fix` repairs the fixable."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from backup_jobs import sqlitefile
from opsmon import catalog
from opsmon.catalog import SAFETY, IntegrityStatus
from opsmon.config import IntegrityRule
from opsmon.exits import Failure
from backup_jobs.store import BackupStore


class FixFailed(Failure):
    """The fixes were not applied (rolled back); the message says why."""


@dataclass
class CheckResult:
    checked_at: float
    integrity_problems: list[str]
    foreign_key_problems: list[str]
    rule_violations: dict[str, int]
    fixed: dict[str, int] = field(default_factory=dict)
    safety_backup: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.integrity_problems or self.foreign_key_problems or any(self.rule_violations.values()))

    def as_status(self) -> IntegrityStatus:
        """What status.json keeps for the exporter's database collector."""
        return IntegrityStatus(checked_at=self.checked_at, ok=self.ok, integrity_problems=self.integrity_problems[:20],
                               foreign_key_violations=len(self.foreign_key_problems),
                               rule_violations=dict(self.rule_violations))

    def as_json(self) -> dict:
        return {**self.as_status().model_dump(mode="json"), "foreign_key_problems": self.foreign_key_problems[:100],
                "fixed": self.fixed, "safety_backup": self.safety_backup}


def _violations(connection: sqlite3.Connection, rule: IntegrityRule) -> int:
    return len(connection.execute(rule.query).fetchall())


def check(database: Path, rules: list[IntegrityRule], quick: bool = False,
          clock: Callable[[], float] | None = None) -> CheckResult:
    """Run every check on the live database, read-only. A check that cannot run (a damaged database,
    a rule whose query fails) is itself a problem found: recorded, never raised."""
    with closing(sqlitefile.open_readonly(database)) as connection:
        problems = sqlitefile.integrity_problems(connection, quick)
        try:
            broken = sqlitefile.foreign_key_problems(connection)
        except sqlite3.DatabaseError as err:
            broken = []
            problems.append(f"foreign_key_check cannot run: {err}")
        violations = {}
        for rule in rules:
            try:
                violations[rule.name] = _violations(connection, rule)
            except sqlite3.Error as err:
                problems.append(f"integrity rule {rule.name}: its query fails: {err}")
    return CheckResult(checked_at=clock() if clock else 0.0, integrity_problems=problems,
                       foreign_key_problems=broken, rule_violations=violations)


def fix(store: BackupStore, rules: list[IntegrityRule], found: CheckResult) -> dict[str, int]:
    """Apply the fix of each fixable rule that has violations, after a safety backup, in one transaction.

    Each fixed rule must have no violations left, and no foreign key may break, before the commit;
    otherwise nothing is applied. Returns rows fixed per rule.
    """
    to_fix = [r for r in rules if r.fixable and found.rule_violations.get(r.name)]
    if not to_fix:
        return {}
    found.safety_backup = store.create(SAFETY).id
    with closing(sqlite3.connect(store.database, isolation_level=None, timeout=60)) as connection:
        connection.execute("BEGIN IMMEDIATE")
        try:
            broken_before = len(sqlitefile.foreign_key_problems(connection))
            fixed = {}
            for rule in to_fix:
                before = _violations(connection, rule)
                connection.execute(rule.fix)
                left = _violations(connection, rule)
                if left:
                    raise FixFailed(f"integrity rule {rule.name}: {left} violation(s) remain after its fix; "
                                    "nothing was changed")
                fixed[rule.name] = before
            broken_after = len(sqlitefile.foreign_key_problems(connection))
            if broken_after > broken_before:
                raise FixFailed(f"the fixes would break {broken_after - broken_before} foreign key(s); "
                                "nothing was changed")
            connection.execute("COMMIT")
        except sqlite3.Error as err:
            connection.execute("ROLLBACK")
            raise FixFailed(f"a fix statement fails: {err}; nothing was changed") from None
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return fixed


def record(directory: Path, result: CheckResult, database: str | None = None, by: catalog.Origin | None = None) -> None:
    catalog.record_integrity(directory, result.as_status().model_copy(update={"by": by}), database)
