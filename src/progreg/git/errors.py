"""The plumbing's own error: bytes that are not a valid Git object, pack or delta.

The parsers of this package (:mod:`~progreg.git.objects.encoding`,
:mod:`~progreg.git.pack.format`, :mod:`~progreg.git.objects.delta`) read both what arrives
from elsewhere and the registry's own packs; they do not know which. They
raise :class:`MalformedObjectError`, a :class:`~progreg.DamagedObjectError`
(an object of the registry that cannot be read); the readers of what arrives
say so: :mod:`~progreg.git.bundle.unbundle` raises :class:`~progreg.BundleError`
instead, naming the bundle.
"""

from __future__ import annotations

from progreg.errors import DamagedObjectError


class MalformedObjectError(DamagedObjectError):
    """Bytes that are not a valid Git object, pack entry or delta."""


__all__ = ["MalformedObjectError"]
