"""The console's users: names, roles and password hashes in a JSON file named in the config."""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path
from typing import NamedTuple

from werkzeug.security import check_password_hash, generate_password_hash

from backup_jobs.inputs import UsageError
from opsmon.files import write_json_atomically

ROLES = ("viewer", "admin")
# A hash to check against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not a password of anyone")


class UsersFileInvalid(UsageError):
    """The users file cannot be read as users; the message names the file and what is wrong."""


class Account(NamedTuple):
    role: str
    # Changes with each new password (each hash has its own salt): a session opened before it ends.
    password_stamp: str


class Users:
    def __init__(self, path: Path):
        self.path = Path(path)

    def _read(self) -> dict:
        try:
            document = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as err:
            raise UsersFileInvalid(f"{self.path}: cannot be read as JSON ({err})") from None
        return self._checked(document)

    def _checked(self, document: object) -> dict:
        """{"users": {name: {"role": ..., "password_hash": ...}}}, or UsersFileInvalid naming what is not."""
        users = document.get("users") if isinstance(document, dict) else None
        if not isinstance(users, dict):
            found = json.dumps(document)
            raise UsersFileInvalid(f'{self.path}: not a users file: expected {{"users": {{NAME: {{"role": ..., '
                                   f'"password_hash": ...}}}}}}, found {found[:60]}{"…" if len(found) > 60 else ""}; '
                                   f"fix or remove it, then add users with `opsmon-backup user add NAME`")
        for name, user in users.items():
            if not isinstance(user, dict) or user.get("role") not in ROLES \
                    or not isinstance(user.get("password_hash"), str):
                raise UsersFileInvalid(f"{self.path}: user {name!r} needs a role ({' or '.join(ROLES)}) and a "
                                       f"password_hash; fix or remove that entry")
        return users

    def add(self, name: str, password: str, role: str) -> None:
        if role not in ROLES:
            raise UsageError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if not name.isidentifier() or len(password) < 12:
            raise UsageError("a user name is letters, digits and _; a password has 12 characters at least")
        users = self._read()
        kept = users.get(name, {}).get("password_hash")
        if not (kept and check_password_hash(kept, password)):  # a new password, and only then, a new hash
            kept = generate_password_hash(password)
        users[name] = {"role": role, "password_hash": kept}
        write_json_atomically(self.path, {"users": users}, mode=0o600)  # never readable by others, not even briefly

    def change_password(self, name: str, password: str) -> None:
        """A new password for an existing user, who keeps their role; their other sessions end with the old one."""
        user = self._read().get(name)
        if user is None:
            raise UsageError(f"no user {name!r} in {self.path}: add one with `opsmon-backup user add {name}`")
        self.add(name, password, user["role"])

    def ensure_admin(self) -> str | None:
        """On first start, an admin with a generated password; returns the password to show once."""
        if self._read():
            return None
        password = secrets.token_urlsafe(15)
        self.add("admin", password, "admin")
        return password

    def account(self, name: str | None) -> Account | None:
        """The user's role and password stamp now, or None when there is no such user."""
        user = self._read().get(name) if name else None
        return _account(user) if user else None

    def authenticate(self, name: str, password: str) -> Account | None:
        """The user's account when the password is right, else None (in about the same time either way)."""
        user = self._read().get(name)
        if user is None:
            check_password_hash(_DUMMY_HASH, password)
            return None
        return _account(user) if check_password_hash(user["password_hash"], password) else None


def _account(user: dict) -> Account:
    return Account(user["role"], hashlib.sha256(user["password_hash"].encode()).hexdigest()[:16])
