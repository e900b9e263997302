"""`python -m cosmolocal` runs the command line."""

from cosmolocal.cli import app

app()
