"""Which process wrote a file or a record, and whether it still runs: ``progreg <pid> on <host>``.

A progreg writer names itself in what it leaves while it works (a pack's
``.keep`` file, Git's ``objects/maintenance.lock``, the records of an
optimization run) so that what a killed process left behind is recognised:
the process named is of this host and no longer running. A process of
another host cannot be asked, so it is never taken for dead.
"""

from __future__ import annotations

import functools
import os
import socket


@functools.cache
def this_host() -> str:
    """The name of this machine, as writers record it."""
    return socket.gethostname()


def writer_label() -> str:
    """``progreg <pid> on <host>`` for this process: what its files and records say."""
    return f"progreg {os.getpid()} on {this_host()}"


def parse_writer_label(text: str) -> tuple[int, str] | None:
    """``(pid, host)`` from a :func:`writer_label` text; ``None`` when it is not one."""
    words = text.split()
    if len(words) != 4 or words[0] != "progreg" or words[2] != "on" or not words[1].isdigit():
        return None
    return int(words[1]), words[3]


def process_gone(pid: int, host: str) -> bool:
    """Whether process ``pid`` of ``host`` has ended (``False`` when that cannot be told).

    Only a process of this host can be asked; this process is never gone, and a
    process the caller may not signal still runs.
    """
    if host != this_host() or pid <= 0:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False
