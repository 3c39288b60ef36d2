"""The subcommands of opsmon-backup, a module each, in the order `opsmon-backup --help` lists them."""

from __future__ import annotations

from backup_jobs.commands import check, create, delete, drill, listing, prune, restore, serve, status, user, verify
from backup_jobs.commands.command import Command

COMMANDS: dict[str, Command] = {module.COMMAND.name: module.COMMAND for module in (
    status, create, listing, verify, restore, delete, prune, check, drill, user, serve)}
