"""Reading Brandimarte / .fjs flexible job-shop files (solver.jobshop.brandimarte)."""

from __future__ import annotations

from pathlib import Path

import pytest

from solver.jobshop.brandimarte import parse_brandimarte
from solver.jobshop.fjsp import check_schedule, solve
from tests.shared import SHARED

FJSP_FOLDER = SHARED / "benchmarks" / "fjsp"

# 2 jobs, 3 machines numbered from 0. Job 1: op (m0 3 | m2 5), op (m1 2). Job 2: op (m1 4 | m2 4).
ZERO_BASED = "2 3\n2 2 0 3 2 5 1 1 2\n1 2 1 4 2 4\n"
# The same instance in the classic .fjs layout: third header field, machines numbered from 1, CRLF.
ONE_BASED = "2   3   1.5\r\n2 2 1 3 3 5 1 2 2\r\n1 2 2 4 3 4\r\n"


def test_zero_and_one_based_files_read_the_same() -> None:
    a = parse_brandimarte(ZERO_BASED)
    b = parse_brandimarte(ONE_BASED)
    assert a.num_machines == b.num_machines == 3
    assert [[dict(op.alternatives) for op in job.operations] for job in a.jobs] == [
        [{0: 3, 2: 5}, {1: 2}],
        [{1: 4, 2: 4}],
    ]
    assert [[dict(op.alternatives) for op in job.operations] for job in b.jobs] == [
        [dict(op.alternatives) for op in job.operations] for job in a.jobs
    ]
    result = solve(a, time_limit_s=5.0, workers=1)
    assert check_schedule(a, result) == []
    assert result.objective == 5  # job 1: 0-3 on m0, 3-5 on m1; job 2: 0-4 on m2


def test_tokens_not_lines_are_read(tmp_path: Path) -> None:
    wrapped = "2 3\n2 2 0 3\n2 5 1 1 2\n1 2 1 4 2 4"  # one job split over two lines, no final newline
    assert parse_brandimarte(wrapped).num_operations == 3
    path = tmp_path / "tiny.fjs"
    path.write_bytes(ONE_BASED.encode())
    instance = parse_brandimarte(path)
    assert instance.name == "tiny" and instance.num_operations == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("2\n1 1 0 3\n", "header"),
        ("2 3\n2 2 0 3 2 5 1 1 2\n", "unexpected end of file: expected job 2: the number of operations"),
        (
            "2 3\n2 2 0 3 2 5 1 1 2\n1 2 1 4 9 4\n",
            r"line 3: job 2, operation 1: machine 9 does not exist \(3",
        ),
        ("2 3 2\n1 1 0 3\n1 1 1 1\n", "machine 0 does not exist .*numbered from 1"),
        (
            "2 3\n1 1 0 x\n1 1 1 1\n",
            "line 2, token 6: job 1, operation 1: a processing time must be an integer",
        ),
        ("2 3\n1 1 0 0\n1 1 1 1\n", "processing time on machine 0 must be positive"),
        ("2 3\n1 2 0 3 0 4\n1 1 1 1\n", "machine 0 is listed twice"),
        ("1 3\n1 1 0 3\n7\n", "line 3: unexpected token '7' after the 1 jobs"),
        ("0 3\n", "number of jobs must be positive"),
        ("1 3\n0\n", "job 1: the number of operations must be positive"),
    ],
)
def test_errors_say_where_and_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_brandimarte(text)


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        parse_brandimarte(tmp_path / "missing.txt")


@pytest.mark.skipif(not FJSP_FOLDER.is_dir(), reason="shared benchmark folder absent")
@pytest.mark.parametrize(
    ("name", "jobs", "machines", "operations"),
    [
        ("mk01", 10, 6, 55),
        ("mk02", 10, 6, 58),
        ("mk03", 15, 8, 150),
        ("mk04", 15, 8, 90),
        ("mk05", 15, 4, 106),
    ],
)
def test_the_shared_instances_have_their_published_sizes(
    name: str, jobs: int, machines: int, operations: int
) -> None:
    instance = parse_brandimarte(FJSP_FOLDER / f"{name}.txt")
    assert (len(instance.jobs), instance.num_machines, instance.num_operations) == (
        jobs,
        machines,
        operations,
    )
