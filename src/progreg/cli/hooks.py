"""``progreg hooks install`` and ``progreg validate``."""
