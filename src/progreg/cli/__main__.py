"""``python -m progreg.cli``: the command line, as Git's drivers and hooks start it."""

from progreg.cli.main import main

main()
