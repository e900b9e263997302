"""Where the team's shared folder is (public benchmark instances, real fablab data), if anywhere.

Tests and benchmarks read it in place and never copy it into the project (the data's licence does not
allow republishing). It is looked for in $COSMOLOCAL_SHARED, then beside the repository (a folder
`shared` next to the project's folder); tests that need it skip with a reason when it is absent. No
machine's own path is written here: set COSMOLOCAL_SHARED when the folder lives anywhere else.
"""

from __future__ import annotations

import os
from pathlib import Path


def shared_folder() -> Path:
    """The first existing candidate, or the first candidate (absent) so that tests can skip."""
    candidates = [
        *([Path(os.environ["COSMOLOCAL_SHARED"])] if os.environ.get("COSMOLOCAL_SHARED") else []),
        Path(__file__).resolve().parents[2] / "shared",
    ]
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED = shared_folder()
