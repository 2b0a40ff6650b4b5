"""Duplicate detection: a compact set of 64-bit example digests (see "Memory" in the package docstring)."""

from __future__ import annotations

from array import array


class _DigestSet:
    """Set of non-zero 64-bit digests: 256 open-addressing shards over ``array('Q')`` (8 bytes a slot, load
    1/4..1/2), no per-entry Python objects; each shard grows on its own, so a rehash is small. Insertion order
    and lines are kept in two flat arrays (12 bytes an entry, appended sequentially) only to name the first
    line of a reported duplicate, which costs a linear scan but happens at most ``max_errors`` times."""

    __slots__ = ("lines", "order", "shards")

    def __init__(self) -> None:
        self.shards = [[array("Q", bytes(8 * 64)), 63, 0] for _ in range(256)]
        self.order = array("Q")
        self.lines = array("I")

    def add(self, h: int, line: int) -> bool:
        """Insert ``h``; False if it was already there."""
        shard = self.shards[h >> 56]
        keys = shard[0]
        mask = shard[1]
        i = h & mask
        while True:
            k = keys[i]
            if k == h:
                return False
            if not k:
                break
            i = (i + 1) & mask
        keys[i] = h
        self.order.append(h)
        self.lines.append(line)
        shard[2] += 1
        if shard[2] * 2 > mask:
            size = 2 * len(keys)
            new = array("Q", bytes(8 * size))
            mask = size - 1
            for k in keys:
                if k:
                    i = k & mask
                    while new[i]:
                        i = (i + 1) & mask
                    new[i] = k
            shard[0], shard[1] = new, mask
        return True

    def first_line(self, h: int) -> int:
        return self.lines[self.order.index(h)]
