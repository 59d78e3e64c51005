"""``progreg remote``, ``push``, ``pull`` and ``sync``."""
