"""The one error type of the protocol layer."""

from __future__ import annotations

from pydantic import ValidationError


class ProtocolError(ValueError):
    """A frame or record that does not follow the protocol; the text says what and where."""


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    """One line per problem, each naming the field path and the reason, for logs and replies."""
    parts = []
    for problem in error.errors(include_url=False):
        path = ".".join(str(p) for p in problem.get("loc", ()))
        where = f"{prefix}.{path}" if prefix and path else (prefix or path or "(root)")
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts)
