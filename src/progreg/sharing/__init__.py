"""Registries exchanging programs: bundles, remotes and merges.

Export and import (:mod:`~progreg.sharing.transfer`), remotes with push,
pull and sync (:mod:`~progreg.sharing.remotes`), the program-level merge
(:mod:`~progreg.sharing.merging`) and the checks of what arrives
(:mod:`~progreg.sharing.incoming`). Built on :mod:`progreg.registry`.
"""
