"""The net with its regions' LPs solved side by side in worker processes is the net solved in one."""

from __future__ import annotations

import pytest

from scenarios.fanout import FanoutError, open_executor
from scenarios.federation import federation
from scenarios.federation_pool import PooledSolves, load, wait_ready
from solver.federation.net import run_net
from solver.model.problem import SolveParams

PARAMS = SolveParams(late_window_days=2.0, time_limit_s=5.0)


def test_the_pooled_net_trades_as_the_one_process_net() -> None:
    regions = federation(3, 60, 12, seed=3, case="surge")
    problems = {r.id: r.problem for r in regions}
    alone = run_net(problems, PARAMS)
    with open_executor("process", 2, initializer=load, initargs=(problems, PARAMS)) as executor:
        wait_ready(executor, 2)
        solves = PooledSolves(executor)
        pooled = run_net(problems, PARAMS, solves=solves)
    assert alone.trades, "the surge traded nothing: the comparison would test nothing"
    assert pooled.trades == alone.trades
    assert pooled.rounds == alone.rounds
    assert pooled.federated == alone.federated
    assert [m.body for m in pooled.messages] == [m.body for m in alone.messages]
    assert set(solves.seconds) == set(problems)  # every region's LPs went to the pool


def test_a_worker_initializer_needs_the_process_executor() -> None:
    with (
        pytest.raises(FanoutError, match="initializer"),
        open_executor("dask", 1, initializer=load, initargs=({}, PARAMS)),
    ):
        pass
