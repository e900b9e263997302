"""Operator tokens: shown once, stored hashed, bound to one lab; the CLI creates them."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cosmolocal.cli import app
from planner.auth import TokenError, TokenStore, bearer


def test_a_token_is_stored_only_as_its_sha256(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "planner.db")
    token = store.create("operator", "fablab-lyon", "night shift")
    rows = sqlite3.connect(tmp_path / "planner.db").execute("SELECT * FROM access_tokens").fetchall()
    assert len(rows) == 1
    assert token not in repr(rows)
    assert rows[0][0] == hashlib.sha256(token.encode()).hexdigest()
    grant = store.check(token)
    assert grant is not None and grant.role == "operator" and grant.label == "night shift"
    assert grant.may_operate("fablab-lyon") and not grant.may_operate("fablab-lille")


def test_wrong_revoked_and_requester_tokens_operate_nothing(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "planner.db")
    token = store.create("operator", "fablab-lyon")
    assert store.check(token + "x") is None
    assert store.check("not-a-token") is None
    requester = store.create("requester")
    assert store.check(requester) is not None and not store.check(requester).may_operate("fablab-lyon")
    assert store.revoke(token) and store.check(token) is None


@pytest.mark.parametrize(
    ("role", "lab", "words"),
    [
        ("admin", None, "choose one of"),
        ("operator", None, "--lab"),
        ("requester", "fablab-lyon", "leave out"),
    ],
)
def test_bad_token_requests_say_what_to_do(tmp_path: Path, role: str, lab: str | None, words: str) -> None:
    with pytest.raises(TokenError, match=words):
        TokenStore(tmp_path / "planner.db").create(role, lab)


def test_bearer_header_parsing() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer("Bearer ") is None
    assert bearer(None) is None


def test_cli_prints_the_token_once(tmp_path: Path) -> None:
    db = tmp_path / "var" / "planner.db"
    args = ["planner", "token", "create", "--role", "operator", "--lab", "fablab-lyon", "--db", str(db)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[0]
    assert TokenStore(db).check(token) is not None
    bad = CliRunner().invoke(app, ["planner", "token", "create", "--role", "operator", "--db", str(db)])
    assert bad.exit_code == 2 and "--lab" in bad.output
