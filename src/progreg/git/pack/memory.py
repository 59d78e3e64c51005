"""Bounds on the memory libgit2 maps and caches in this process.

libgit2 reads pack files through memory-mapped windows, by default (on
64-bit) 1 GiB each and up to 8 GiB in all, and keeps up to 256 MiB of parsed
objects per process. Every page of a pack that a read touches stays
resident as long as its window is mapped: walking the log of a registry
of 100k programs touches most of its pack (about 250 MB), which then
stays in the process's resident set to the end.

These are process-wide settings of libgit2, so they apply to every
repository the process opens, progreg's or not. :func:`bound_libgit2_memory`
lowers them, once per process (when progreg opens its first registry), to
windows of :data:`WINDOW_SIZE` bytes, at most :data:`MAPPED_LIMIT` bytes
mapped at once, and :data:`CACHE_LIMIT` bytes of cached objects. A setting
that is already at or below progreg's bound is left alone, and an
application that wants larger ones can set them after opening a registry:
progreg never sets them again.
"""

from __future__ import annotations

import threading

import pygit2

#: Bytes of a pack mapped by one window.
WINDOW_SIZE = 8 * 1024 * 1024
#: Bytes of packs mapped at once: past it, libgit2 unmaps the least recently used windows.
MAPPED_LIMIT = 32 * 1024 * 1024
#: Bytes of parsed objects (commits, trees) libgit2 caches in the process.
CACHE_LIMIT = 64 * 1024 * 1024

_lock = threading.Lock()
_done = False


def bound_libgit2_memory() -> None:
    """Lower libgit2's process-wide window and cache sizes to progreg's bounds (once)."""
    global _done  # noqa: PLW0603 -- one process-wide setting, applied once
    with _lock:
        if _done:
            return
        _done = True
        settings = pygit2.settings
        settings.mwindow_size = min(settings.mwindow_size, WINDOW_SIZE)
        settings.mwindow_mapped_limit = min(settings.mwindow_mapped_limit, MAPPED_LIMIT)
        if settings.cached_memory[1] > CACHE_LIMIT:
            settings.cache_max_size(CACHE_LIMIT)
