"""A small thread-safe LRU map: the estimator engine's and the estimator client's caches."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``capacity`` entries; a lookup refreshes its entry, an insert past the capacity
    evicts the least recently used one. Every method holds the map's own lock; it never calls
    out while holding it, so a caller may use it under a lock of its own."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"LRU capacity must be >= 0 (0 keeps nothing), got {capacity}")
        self.capacity = capacity
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0  # lookups that found their key (read by the estimator's /metrics)
        self.misses = 0

    def get(self, key: K) -> V | None:
        """The value at ``key`` (now the most recently used), or None when absent."""
        with self._lock:
            if key not in self._data:
                self.misses += 1
                return None
            self.hits += 1
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> V:
        """The cached value, or ``compute()``'s, stored. ``compute`` runs outside the lock, so
        different keys compute in parallel (two threads missing the same key both compute it)."""
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
