"""Read flexible job-shop instances in the Brandimarte (1993) format into a
`solver.jobshop.instance.Instance`.

Format (whitespace-separated tokens; line breaks, CRLF included, carry no meaning):

- header `<jobs> <machines>`: machines are numbered from 0 (the files in the shared benchmark folder);
- or header `<jobs> <machines> <average machines per operation>`: the classic `.fjs` files, whose
  machines are numbered from 1;
- then per job: `<number of operations>`, and per operation `<k>` followed by k pairs
  `<machine> <processing time>`.

Errors are ValueError naming where the parser was (line, token, job, operation) and why, so a broken
file can be fixed by hand.
"""

from __future__ import annotations

from pathlib import Path

from solver.jobshop.instance import FjJob, FjOperation, Instance


class _Tokens:
    """Integer tokens with their line numbers, read one at a time with a description of what is expected."""

    def __init__(self, text: str) -> None:
        self.items: list[tuple[str, int]] = [
            (token, number)
            for number, line in enumerate(text.splitlines(), start=1)
            for token in line.split()
        ]
        self.position = 0

    def line(self) -> int:
        if self.position < len(self.items):
            return self.items[self.position][1]
        return self.items[-1][1] if self.items else 1

    def next_int(self, what: str) -> int:
        if self.position >= len(self.items):
            raise ValueError(f"unexpected end of file: expected {what}")
        token, number = self.items[self.position]
        try:
            value = int(token)
        except ValueError:
            raise ValueError(
                f"line {number}, token {self.position + 1}: {what} must be an integer, got {token!r}"
            ) from None
        self.position += 1
        return value


def parse_brandimarte(source: str | Path, name: str | None = None) -> Instance:
    """Parse a Brandimarte / `.fjs` instance from a path or from its text.

    A `Path` is read as a file; a `str` is taken as the file's text when it contains a line break or
    whitespace-separated tokens, else as a path. `name` defaults to the file stem (or "instance").
    Raises ValueError saying where and why on malformed data, and OSError when a file cannot be read.
    """
    if isinstance(source, Path) or (isinstance(source, str) and len(source.split()) == 1):
        path = Path(source)
        text = path.read_text(encoding="utf-8", errors="replace")
        name = name or path.stem
    else:
        text = source
    return _parse(text, name or "instance")


def _parse(text: str, name: str) -> Instance:
    tokens = _Tokens(text)
    if not tokens.items:
        raise ValueError("empty file: expected a header '<jobs> <machines>'")
    header = [token for token, number in tokens.items if number == tokens.items[0][1]]
    if len(header) not in (2, 3):
        raise ValueError(
            f"line {tokens.items[0][1]}: the header must be '<jobs> <machines>' or "
            f"'<jobs> <machines> <machines per operation>', got {' '.join(header)!r}"
        )
    num_jobs = tokens.next_int("the number of jobs")
    num_machines = tokens.next_int("the number of machines")
    first_machine = 0
    if len(header) == 3:
        try:
            float(header[2])
        except ValueError:
            raise ValueError(
                f"line {tokens.items[0][1]}: the third header field (machines per operation) must be a "
                f"number, got {header[2]!r}"
            ) from None
        tokens.position += 1
        first_machine = 1
    if num_jobs <= 0:
        raise ValueError(f"line {tokens.items[0][1]}: the number of jobs must be positive, got {num_jobs}")
    if num_machines <= 0:
        raise ValueError(
            f"line {tokens.items[0][1]}: the number of machines must be positive, got {num_machines}"
        )
    jobs: list[FjJob] = []
    for j in range(num_jobs):
        job_label = f"job {j + 1}"
        count = tokens.next_int(f"{job_label}: the number of operations")
        if count <= 0:
            raise ValueError(
                f"line {tokens.line()}: {job_label}: the number of operations must be positive, got {count}"
            )
        operations: list[FjOperation] = []
        for o in range(count):
            where = f"{job_label}, operation {o + 1}"
            k = tokens.next_int(f"{where}: the number of machines")
            line = tokens.items[tokens.position - 1][1]
            if k <= 0:
                raise ValueError(f"line {line}: {where}: the number of machines must be positive, got {k}")
            alternatives: dict[int, int] = {}
            for _ in range(k):
                machine = tokens.next_int(f"{where}: a machine number")
                line = tokens.items[tokens.position - 1][1]
                duration = tokens.next_int(f"{where}: a processing time")
                index = machine - first_machine
                if not 0 <= index < num_machines:
                    numbering = "numbered from 1" if first_machine else "numbered from 0"
                    raise ValueError(
                        f"line {line}: {where}: machine {machine} does not exist "
                        f"({num_machines} machines, {numbering})"
                    )
                if duration <= 0:
                    raise ValueError(
                        f"line {line}: {where}: processing time on machine {machine} must be positive, "
                        f"got {duration}"
                    )
                if index in alternatives:
                    raise ValueError(f"line {line}: {where}: machine {machine} is listed twice")
                alternatives[index] = duration
            operations.append(FjOperation(alternatives))
        jobs.append(FjJob(tuple(operations), name=job_label))
    if tokens.position < len(tokens.items):
        token, line = tokens.items[tokens.position]
        raise ValueError(
            f"line {line}: unexpected token {token!r} after the {num_jobs} jobs the header announced"
        )
    return Instance(tuple(jobs), num_machines, name=name)
