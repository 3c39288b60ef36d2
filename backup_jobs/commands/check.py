"""`opsmon-backup check`: integrity_check, foreign_key_check and the business rules; `--fix` repairs."""

from __future__ import annotations

import argparse
import json

from backup_jobs.commands.command import Command
from backup_jobs.integrity import CheckResult
from backup_jobs.jobs import Jobs
from opsmon.exits import EXIT_OK, EXIT_PROBLEMS


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fix", action="store_true", help="apply the fixable rules' fixes (after a safety backup)")
    parser.add_argument("--json", action="store_true", help="the findings as JSON, for scripts")


def run(args: argparse.Namespace, jobs: Jobs) -> int:
    result = jobs.check(fix=args.fix)
    _print_check(result, args.json)
    return EXIT_OK if result.ok else EXIT_PROBLEMS


def _print_check(result: CheckResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
        return
    print("integrity: " + ("ok" if not result.integrity_problems else "; ".join(result.integrity_problems[:5])))
    print(f"foreign keys: {len(result.foreign_key_problems)} broken reference(s)")
    for problem in result.foreign_key_problems[:10]:
        print(f"  {problem}")
    for rule, count in result.rule_violations.items():
        print(f"rule {rule}: {count} violation(s)")
    for rule, count in result.fixed.items():
        print(f"fixed {count} row(s) of rule {rule} (safety backup {result.safety_backup})")


COMMAND = Command(
    "check", run, arguments=arguments, locked=True,
    help="integrity_check, foreign_key_check and the business rules",
    examples=(("opsmon-backup check", "exit status 3 when the database is damaged or a rule is broken"),
              ("opsmon-backup check --fix", "apply the rules' fixes in one transaction, after a safety backup")))
