"""Git deltas (``gitformat-pack``, "Deltified representation"): make and apply them.

A delta is the base's size, the target's size, then instructions: *copy*
``size`` bytes from ``offset`` of the base, or *insert* up to 127 literal
bytes. :func:`make_delta` finds the common prefix and suffix of two versions
(what one edited program or one changed tree entry looks like);
:func:`apply_delta` applies any delta Git writes, strictly.
"""

from __future__ import annotations

from progreg.git.errors import MalformedObjectError

_MAX_COPY = 0xFFFFFF


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _common_prefix(a: bytes, b: bytes) -> int:
    limit = min(len(a), len(b))
    if a[:limit] == b[:limit]:
        return limit
    low, high = 0, limit  # a[:low] == b[:low] and a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle
    return low


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    limit = min(limit, len(a), len(b))
    if limit == 0 or a[len(a) - limit :] == b[len(b) - limit :]:
        return limit
    low, high = 0, limit
    while high - low > 1:
        middle = (low + high) // 2
        if a[len(a) - middle :] == b[len(b) - middle :]:
            low = middle
        else:
            high = middle
    return low


def _copy(out: bytearray, offset: int, size: int) -> None:
    while size > 0:
        chunk = min(size, _MAX_COPY)
        command = 0x80
        operands = bytearray()
        for index in range(4):
            byte = (offset >> (8 * index)) & 0xFF
            if byte:
                command |= 1 << index
                operands.append(byte)
        for index in range(3):
            byte = (chunk >> (8 * index)) & 0xFF
            if byte:
                command |= 1 << (4 + index)
                operands.append(byte)
        out.append(command)
        out += operands
        offset += chunk
        size -= chunk


def make_delta(base: bytes, target: bytes) -> bytes | None:
    """A delta turning ``base`` into ``target`` (common prefix and suffix), or ``None``.

    ``None`` means the delta would not be much smaller than ``target`` itself.
    This finds one changed region only; that is what consecutive versions of a
    tree or of a program document look like.
    """
    prefix = _common_prefix(base, target)
    suffix = _common_suffix(base, target, min(len(base), len(target)) - prefix)
    middle = target[prefix : len(target) - suffix]
    if len(middle) > len(target) // 2:
        return None
    out = bytearray(_varint(len(base)) + _varint(len(target)))
    _copy(out, 0, prefix)
    for start in range(0, len(middle), 127):
        chunk = middle[start : start + 127]
        out.append(len(chunk))
        out += chunk
    _copy(out, len(base) - suffix, suffix)
    return bytes(out)


def _read_varint(delta: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(delta):
            raise MalformedObjectError("a delta in the pack is truncated")
        byte = delta[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
        if shift > 63:
            raise MalformedObjectError("a delta in the pack has an oversized length")


def apply_delta(base: bytes, delta: bytes, max_size: int) -> bytes:
    """Apply a Git delta to ``base``; raise :class:`MalformedObjectError` if it is malformed.

    Every instruction is checked against the delta's end, the base's size and
    the announced target size before it is carried out, so that a hostile
    delta can neither read out of bounds nor build more than ``max_size`` bytes.
    """
    source_size, pos = _read_varint(delta, 0)
    target_size, pos = _read_varint(delta, pos)
    if source_size != len(base):
        raise MalformedObjectError("a delta in the pack does not match the size of its base object")
    if target_size > max_size:
        raise MalformedObjectError(
            f"an object in the pack is {target_size} bytes, over the limit of {max_size}"
        )
    out = bytearray()
    length = len(delta)
    while pos < length:
        command = delta[pos]
        pos += 1
        if command & 0x80:
            operands = bin(command & 0x7F).count("1")
            if pos + operands > length:
                raise MalformedObjectError("a delta in the pack is truncated in a copy instruction")
            offset = size = 0
            for index in range(4):
                if command & (1 << index):
                    offset |= delta[pos] << (8 * index)
                    pos += 1
            for index in range(3):
                if command & (1 << (4 + index)):
                    size |= delta[pos] << (8 * index)
                    pos += 1
            if size == 0:
                size = 0x10000
            if offset + size > len(base):
                raise MalformedObjectError("a delta in the pack copies beyond the end of its base")
            chunk = base[offset : offset + size]
        elif command:
            if pos + command > length:
                raise MalformedObjectError(
                    "a delta in the pack is truncated in an insert instruction"
                )
            chunk = delta[pos : pos + command]
            pos += command
        else:
            raise MalformedObjectError("a delta in the pack has an invalid instruction")
        if len(out) + len(chunk) > target_size:
            raise MalformedObjectError("a delta in the pack produces more than its announced size")
        out += chunk
    if len(out) != target_size:
        raise MalformedObjectError("a delta in the pack produced an object of the wrong size")
    return bytes(out)
