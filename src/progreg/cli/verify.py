"""``progreg verify``."""
