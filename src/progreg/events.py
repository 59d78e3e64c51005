"""Structured events: what progreg did, for logs, metrics and tests.

Every event is emitted twice over:

* as a :mod:`logging` record on the ``progreg.events`` logger (level INFO,
  ERROR for ``*_error`` events), with ``record.event`` set to the event name
  and each field (``program_id``, ``size_bytes``, ``duration_ms``...) set as
  an attribute of the record; configure logging as usual to see them;
* to every callback registered with :func:`subscribe`, as an :class:`Event`.

>>> import progreg
>>> seen = []
>>> unsubscribe = progreg.subscribe(seen.append)
>>> unsubscribe()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from progreg.errors import ProgregError

logger = logging.getLogger("progreg.events")
logging.getLogger("progreg").addHandler(logging.NullHandler())

# Attributes a LogRecord already has; fields with these names are prefixed.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


@dataclass(frozen=True)
class Event:
    """One thing that happened: ``name`` such as ``progreg.storage.save_complete``."""

    name: str
    fields: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    @property
    def is_error(self) -> bool:
        """True for ``*_error`` events."""
        return self.name.endswith("_error")


Subscriber = Callable[[Event], object]
_subscribers: list[Subscriber] = []
_lock = threading.Lock()


def subscribe(callback: Subscriber) -> Callable[[], None]:
    """Call ``callback(event)`` for every event; returns a function that unsubscribes.

    Callbacks run synchronously in the thread that emitted the event; an
    exception in a callback is logged and never breaks the operation.
    """
    with _lock:
        _subscribers.append(callback)

    def unsubscribe() -> None:
        with _lock:
            if callback in _subscribers:
                _subscribers.remove(callback)

    return unsubscribe


def listening(level: int = logging.INFO) -> bool:
    """Whether an event at ``level`` would reach anyone (a subscriber or the logger).

    Callers whose event fields cost something to compute can skip them when not.
    """
    return bool(_subscribers) or logger.isEnabledFor(level)


def emit(name: str, level: int | None = None, **fields: Any) -> None:
    """Emit event ``name`` with ``fields`` to subscribers and to the logger.

    The log level is ERROR for ``*_error`` events and INFO otherwise, unless
    ``level`` says otherwise (WARNING for recoveries, say).
    """
    if level is None:
        level = logging.ERROR if name.endswith("_error") else logging.INFO
    if not _subscribers and not logger.isEnabledFor(level):
        return  # nobody listens: the common case costs no event
    event = Event(name, fields)
    for callback in tuple(_subscribers):
        try:
            callback(event)
        except Exception:
            logger.exception(
                "event subscriber %r failed on %s",
                callback,
                name,
                extra={"event": "progreg.events.subscriber_error"},
            )
    if logger.isEnabledFor(level):
        extra = {("field_" + k if k in _RESERVED else k): v for k, v in fields.items()}
        extra["event"] = name
        details = " ".join(f"{k}={v}" for k, v in fields.items())
        logger.log(level, "%s %s", name, details, extra=extra)


class operation:  # lower case: used as a function, ``with events.operation(...)``
    """Emit ``<prefix>_start`` now and ``<prefix>_error`` if a progreg error escapes.

    Yields a :class:`Timer`; the caller emits ``<prefix>_complete`` with what
    only it knows (sizes, commit ids). The error is re-raised unchanged.
    """

    __slots__ = ("_fields", "_prefix", "_timer")

    def __init__(self, prefix: str, **fields: Any) -> None:
        self._prefix = prefix
        self._fields = fields

    def __enter__(self) -> Timer:
        self._timer = Timer()
        if listening():
            emit(f"{self._prefix}_start", **self._fields)
        return self._timer

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, ProgregError):
            emit(
                f"{self._prefix}_error",
                **self._fields,
                error=str(exc),
                error_type=type(exc).__name__,
                duration_ms=self._timer.ms,
            )


class Timer:
    """Milliseconds elapsed since creation, for ``duration_ms`` fields."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    @property
    def ms(self) -> float:
        """Elapsed milliseconds, rounded to microseconds."""
        return round((time.perf_counter() - self._start) * 1000, 3)
