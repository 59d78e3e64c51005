"""A bounded cache of objects rebuilt from a pack, most recently used kept."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from progreg.git.objects.encoding import RawObject

#: Bytes of object data a cache keeps by default.
DEFAULT_BUDGET = 16 * 1024 * 1024


class BaseCache:
    """``(type, data)`` of objects by key, at most ``budget`` bytes of data in all
    (default :data:`DEFAULT_BUDGET`).

    Reading a delta chain of a pack rebuilds each object from the one before;
    keeping the last ones read makes reading the next version of a path one
    delta away. Past the budget, the least recently used objects go; an
    object larger than the whole budget is not kept.
    """

    def __init__(self, budget: int | None = None) -> None:
        budget = DEFAULT_BUDGET if budget is None else budget
        if budget < 0:
            raise ValueError("a cache budget is a number of bytes, 0 or more")
        self.budget = budget
        self.size = 0
        self._items: OrderedDict[Hashable, RawObject] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> RawObject | None:
        """The object under ``key``, now the most recently used, or ``None``."""
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: Hashable, item: RawObject) -> None:
        """Keep ``item`` under ``key``, dropping the least recently used past the budget."""
        size = len(item[1])
        if size > self.budget:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= len(old[1])
        self._items[key] = item
        self.size += size
        while self.size > self.budget:
            _, dropped = self._items.popitem(last=False)
            self.size -= len(dropped[1])
