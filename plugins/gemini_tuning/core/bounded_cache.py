"""An LRU cache bounded by the total size of its values, not only by their number.

``functools.lru_cache(maxsize=256)`` bounds entries; when one entry can be large (the examples of an evaluation
results file can hold answers of any length), 256 of them are unbounded memory. :func:`byte_bounded_cache` keeps
the least recently used entries out once the values' estimated size passes ``max_bytes`` (and, optionally,
``maxsize`` entries); a value larger than the whole budget is returned but not kept.

Size estimate: the length of the value's compact JSON (``default=str``), computed once per insert; close to
the UTF-8 size of the strings it holds, which is what dominates (Python's objects cost more, a small constant
factor). Thread-safe (one lock); two threads missing the same key at once both compute it.
"""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["CacheInfo", "byte_bounded_cache", "json_size"]


class CacheInfo(NamedTuple):
    """What a :func:`byte_bounded_cache` wrapper's ``cache_info()`` returns (``functools`` style, plus sizes).

    :param hits: calls answered from the cache.
    :param misses: calls that ran the function.
    :param maxsize: the entry-count limit; None: no count limit.
    :param currsize: the entries held now.
    :param bytes: the estimated size of the values held now, in bytes (by ``sizeof``).
    :param max_bytes: the size limit of the values held, in bytes.
    """

    hits: int
    misses: int
    maxsize: int | None
    currsize: int
    bytes: int
    max_bytes: int


def json_size(value: Any) -> int:
    """The estimated size of ``value`` in bytes: the length of its compact JSON."""
    try:
        return len(json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False).encode())
    except (TypeError, ValueError):  # a cycle: count its repr
        return len(repr(value))


def byte_bounded_cache(*, max_bytes: int, maxsize: int | None = None,
                       sizeof: Callable[[Any], int] = json_size) -> Callable:
    """Decorator: memoize a function of hashable arguments, keeping at most ``max_bytes`` of values (by
    ``sizeof``) and at most ``maxsize`` entries (None: no count limit). Exceptions are not cached. The wrapper has
    ``cache_info()`` (hits, misses, maxsize, currsize, bytes, max_bytes) and ``cache_clear()``."""
    if int(max_bytes) < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes!r}")

    def decorate(func: Callable) -> Callable:
        entries: OrderedDict = OrderedDict()  # key -> (value, size)
        lock = threading.Lock()
        stats = {"hits": 0, "misses": 0, "bytes": 0}

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            key = (args, tuple(sorted(kwargs.items()))) if kwargs else args
            with lock:
                hit = entries.get(key)
                if hit is not None:
                    entries.move_to_end(key)
                    stats["hits"] += 1
                    return hit[0]
                stats["misses"] += 1
            value = func(*args, **kwargs)
            size = sizeof(value)
            if size > max_bytes:
                return value
            with lock:
                old = entries.pop(key, None)
                if old is not None:
                    stats["bytes"] -= old[1]
                entries[key] = (value, size)
                stats["bytes"] += size
                while entries and (stats["bytes"] > max_bytes or (maxsize is not None and len(entries) > maxsize)):
                    _, (_, dropped) = entries.popitem(last=False)
                    stats["bytes"] -= dropped
            return value

        def cache_info() -> CacheInfo:
            with lock:
                return CacheInfo(stats["hits"], stats["misses"], maxsize, len(entries), stats["bytes"],
                                 int(max_bytes))

        def cache_clear() -> None:
            with lock:
                entries.clear()
                stats.update(hits=0, misses=0, bytes=0)

        wrapper.cache_info = cache_info  # type: ignore[attr-defined]
        wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
        return wrapper

    return decorate
