"""Bearer tokens for the planner's web pages: who may decide on a lab's jobs.

A token is a random string shown once when it is created (`cosmolocal planner token create`); the
planner keeps only its SHA-256 hash, in its own table of the ledger file (created here, so the
ledger's schema needs no change). Two roles: `operator`, bound to one lab id (accepts or refuses that
lab's jobs, sees its schedule), and `requester` (kept for order endpoints that will ask for it).
Tokens carry no personal data: a role, a lab id and an optional label such as "night shift".

The planner checks tokens on one connection of its own; tokens created meanwhile by the command line
in another process are seen at once (SQLite WAL).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

Role = Literal["operator", "requester"]
ROLES: tuple[Role, ...] = ("operator", "requester")
#: Prefix of every token, so that a leaked one is recognisable in logs and scanners.
TOKEN_PREFIX = "clt_"

SCHEMA = """
CREATE TABLE IF NOT EXISTS access_tokens (
    token_sha256 TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    lab_id TEXT,
    label TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
"""


class TokenError(ValueError):
    """A token cannot be created as asked (unknown role, operator without a lab)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid token allows: its role and, for an operator, its lab."""

    role: Role
    lab_id: str | None
    label: str

    def may_operate(self, lab_id: str) -> bool:
        """True when this token lets its holder decide on `lab_id`'s jobs."""
        return (
            self.role == "operator" and self.lab_id is not None and hmac.compare_digest(self.lab_id, lab_id)
        )


def digest(token: str) -> str:
    """The stored form of a token: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """The token table in the planner's SQLite ledger file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def create(
        self, role: str, lab_id: str | None = None, label: str = "", now: datetime | None = None
    ) -> str:
        """Create a token and return it; only its hash is stored, so it cannot be shown again."""
        if role not in ROLES:
            raise TokenError(f"role {role!r}: choose one of {', '.join(ROLES)}")
        if role == "operator" and not lab_id:
            raise TokenError("an operator token needs the lab it operates: give --lab LAB_ID")
        if role == "requester" and lab_id:
            raise TokenError("a requester token is not bound to a lab: leave out --lab")
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        at = (now or datetime.now(UTC)).isoformat()
        self._db.execute(
            "INSERT INTO access_tokens (token_sha256, role, lab_id, label, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (digest(token), role, lab_id, label[:100], at),
        )
        return token

    def check(self, token: str) -> Grant | None:
        """The grant of a valid, unrevoked token; None for any other string."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        row = self._db.execute(
            "SELECT role, lab_id, label FROM access_tokens WHERE token_sha256 = ? AND revoked = 0",
            (digest(token),),
        ).fetchone()
        if row is None:
            return None
        return Grant(role=row[0], lab_id=row[1], label=row[2])

    def revoke(self, token: str) -> bool:
        """Revoke a token; True when it existed."""
        cursor = self._db.execute(
            "UPDATE access_tokens SET revoked = 1 WHERE token_sha256 = ? AND revoked = 0", (digest(token),)
        )
        return cursor.rowcount > 0


def bearer(authorization: str | None) -> str | None:
    """The token in an `Authorization: Bearer ...` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
