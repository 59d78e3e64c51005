"""``progreg completion``: the shell script that enables tab completion.

Completion goes through click's standard mechanism: the script calls
``progreg`` with ``_PROGREG_COMPLETE`` set, and program ids, checkpoint
names, tags and signatures are completed from the registry.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from click.shell_completion import get_completion_class

from progreg.cli.output import ProgregCommand

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_PROGREG_COMPLETE"


def completion_script(shell: str, root: click.Command) -> str:
    """The completion script of ``shell`` for the ``progreg`` command (``root``)."""
    complete = get_completion_class(shell)
    assert complete is not None
    return complete(root, {}, "progreg", COMPLETE_VAR).source()


@click.command(cls=ProgregCommand)
@click.argument("shell", required=False, type=click.Choice(SHELLS))
def completion(shell: str | None) -> None:
    """Print the tab-completion script for SHELL (default: the one $SHELL names).

    \b
    Example:
      eval "$(progreg completion bash)"            # in ~/.bashrc
      eval "$(progreg completion zsh)"             # in ~/.zshrc
      progreg completion fish > ~/.config/fish/completions/progreg.fish
    """
    if shell is None:
        name = Path(os.environ.get("SHELL", "")).name
        shell = name if name in SHELLS else "bash"
    click.echo(completion_script(shell, click.get_current_context().find_root().command))
