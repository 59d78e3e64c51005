"""One registry, read and written: the operations on a bare Git repository.

Saving, loading, deleting and restoring programs (:mod:`~progreg.registry.store`),
the commit log as an index (history, log cache, summaries), tags,
checkpoints, validation, queries (analytics, compare), the commit messages
and their trailers, configuration, and the checks (doctor, verify). Built on
:mod:`progreg.core` and :mod:`progreg.git`.
"""
