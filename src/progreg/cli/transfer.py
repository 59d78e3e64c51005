"""``progreg export`` and ``progreg import``."""
