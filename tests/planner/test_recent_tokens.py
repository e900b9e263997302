"""The planner's token checks are taken from the last look for at most a second."""

from __future__ import annotations

from pathlib import Path

from planner.app import TOKEN_RECHECK_S, RecentTokens
from planner.auth import TokenStore


def test_a_check_is_kept_for_the_recheck_window_and_a_revocation_holds_after_it(tmp_path: Path) -> None:
    clock = [100.0]
    tokens = RecentTokens(tmp_path / "planner.db", monotonic=lambda: clock[0])
    admin = TokenStore(tmp_path / "planner.db")
    token = admin.create("requester")
    grant = tokens.check(token)
    assert grant is not None and grant.role == "requester"
    assert admin.revoke(token)
    assert tokens.check(token) == grant, "within the window the last look stands"
    clock[0] += TOKEN_RECHECK_S
    assert tokens.check(token) is None, "after the window the revocation holds"
    assert tokens.check("clt_not-a-token") is None
    admin.close()
    tokens.close()
