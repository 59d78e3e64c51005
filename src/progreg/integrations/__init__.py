"""progreg inside other tools: the Git server hook and Git work trees.

The ``pre-receive`` hook (:mod:`~progreg.integrations.hooks`) and the checks
of a checked-out registry (:mod:`~progreg.integrations.worktree`). Built on
the public classes.
"""
