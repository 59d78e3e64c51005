"""Git bundles: reading and writing them, and unbundling one into a repository."""
