"""The console's users: names, roles and password hashes in a JSON file named in the config."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from opsmon.files import write_json_atomically

ROLES = ("viewer", "admin")
# A hash to check against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not a password of anyone")


class Users:
    def __init__(self, path: Path):
        self.path = Path(path)

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())["users"]
        except FileNotFoundError:
            return {}

    def add(self, name: str, password: str, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if not name.isidentifier() or len(password) < 12:
            raise ValueError("a user name is letters, digits and _; a password has 12 characters at least")
        users = self._read()
        users[name] = {"role": role, "password_hash": generate_password_hash(password)}
        write_json_atomically(self.path, {"users": users}, mode=0o600)  # never readable by others, not even briefly

    def ensure_admin(self) -> str | None:
        """On first start, an admin with a generated password; returns the password to show once."""
        if self._read():
            return None
        password = secrets.token_urlsafe(15)
        self.add("admin", password, "admin")
        return password

    def role(self, name: str | None) -> str | None:
        """The user's role now, or None when there is no such user."""
        user = self._read().get(name) if name else None
        return user["role"] if user and user.get("role") in ROLES else None

    def authenticate(self, name: str, password: str) -> str | None:
        """The user's role when the password is right, else None (in about the same time either way)."""
        user = self._read().get(name)
        if user is None:
            check_password_hash(_DUMMY_HASH, password)
            return None
        return user["role"] if check_password_hash(user["password_hash"], password) else None
