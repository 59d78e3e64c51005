"""The ``progreg`` command line."""

from progreg.cli.main import cli, main

__all__ = ["cli", "main"]
