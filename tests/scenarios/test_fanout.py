"""The fan-out seam: engine names, gathering in order, stopping on the first error, clear failures."""

from __future__ import annotations

import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from scenarios.fanout import DASK_EXTRA, ExecutorChoice, FanoutError, fan_out, open_executor, parse_executor


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("process", ExecutorChoice("process")),
        ("dask", ExecutorChoice("dask")),
        ("tcp://127.0.0.1:8786", ExecutorChoice("scheduler", "tcp://127.0.0.1:8786")),
        (" tcp://scheduler.lan:9000/ ", ExecutorChoice("scheduler", "tcp://scheduler.lan:9000")),
    ],
)
def test_engine_names_parse(text: str, expected: ExecutorChoice) -> None:
    assert parse_executor(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ray", "unknown executor"),
        ("", "unknown executor"),
        ("tcp://127.0.0.1", "tcp://HOST:PORT"),
        ("tcp://:8786", "tcp://HOST:PORT"),
        ("tcp://127.0.0.1:port", "port must be a number"),
        ("tcp://127.0.0.1:70000", "port must be a number"),
        ("tcp://127.0.0.1:8786/x", "nothing after the port"),
    ],
)
def test_bad_engine_names_say_why(text: str, reason: str) -> None:
    with pytest.raises(FanoutError, match=reason):
        parse_executor(text)


def test_results_come_back_in_the_order_of_the_items_and_each_is_reported() -> None:
    release = threading.Event()

    def task(item: int) -> int:
        if item == 0:
            release.wait(timeout=10)  # the first item finishes last
        return item * item

    seen: list[int] = []

    def done(item: int, result: int) -> None:
        seen.append(item)
        if len(seen) == 3:
            release.set()

    with ThreadPoolExecutor(max_workers=4) as executor:
        assert fan_out(executor, task, [0, 1, 2, 3], done) == [0, 1, 4, 9]
    assert sorted(seen) == [0, 1, 2, 3] and seen[-1] == 0


def test_the_first_error_is_raised_and_tasks_not_started_are_cancelled() -> None:
    release = threading.Event()
    ran: list[int] = []

    def task(item: int) -> int:
        ran.append(item)
        if item == 0:
            raise ValueError("seed 0 is broken")
        release.wait(timeout=10)  # item 1 holds the only worker until fan_out has given up
        return item

    executor = ThreadPoolExecutor(max_workers=1)
    try:
        with pytest.raises(ValueError, match="seed 0 is broken"):
            fan_out(executor, task, list(range(6)))
    finally:
        release.set()
        executor.shutdown(wait=True)
    assert ran[0] == 0 and set(ran) <= {0, 1}  # 1 may have started before the cancel; 2-5 never ran


def test_without_the_dask_extra_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(FanoutError, match="Dask is not installed") as caught, open_executor("dask"):
        pass
    assert DASK_EXTRA in str(caught.value)


def test_an_existing_scheduler_takes_no_worker_count() -> None:
    with pytest.raises(FanoutError, match="its own workers"), open_executor("tcp://127.0.0.1:8786", 2):
        pass


def test_a_scheduler_that_does_not_answer_is_a_clear_error() -> None:
    pytest.importorskip("distributed")
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{closed.getsockname()[1]}"
        with (
            pytest.raises(FanoutError, match="no Dask scheduler answered within 1 s"),
            open_executor(address, connect_timeout_s=1.0),
        ):
            pass


def test_zero_workers_is_refused() -> None:
    with pytest.raises(FanoutError, match="at least 1"), open_executor("process", 0):
        pass


def test_a_scheduler_without_workers_is_a_clear_error() -> None:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=0,
            processes=False,
            protocol="tcp://",
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        ) as empty,
        pytest.raises(FanoutError, match="has no workers after 1 s"),
        open_executor(empty.scheduler_address, connect_timeout_s=1.0),
    ):
        pass
