"""Pack files: reading and writing them, their directory (keep files, the
multi-pack-index, info/packs), the pack store and the tail pack, repacking,
the delta base cache, mapped files, libgit2's memory bounds, reading objects
from the packs alone, and checking every object's integrity."""
