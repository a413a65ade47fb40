"""The one LRU map behind the estimator engine's and the estimator client's caches."""

from __future__ import annotations

import threading

import pytest

from gen5nas.lru import LRU


def test_evicts_the_least_recently_used_and_a_lookup_refreshes() -> None:
    cache: LRU[str, int] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the oldest
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    cache.put("a", 10)  # an update refreshes too
    cache.put("d", 4)
    assert (cache.get("a"), cache.get("c"), len(cache)) == (10, None, 2)


def test_capacity_zero_keeps_nothing_and_a_negative_one_is_refused() -> None:
    cache: LRU[str, int] = LRU(0)
    assert cache.get_or_compute("a", lambda: 1) == 1
    assert len(cache) == 0
    with pytest.raises(ValueError, match="capacity must be >= 0"):
        LRU(-1)


def test_get_or_compute_computes_a_key_once_then_serves_it() -> None:
    cache: LRU[int, int] = LRU(8)
    calls: list[int] = []
    assert cache.get_or_compute(3, lambda: calls.append(3) or 9) == 9
    assert cache.get_or_compute(3, lambda: calls.append(3) or 0) == 9
    assert calls == [3]


def test_threads_sharing_it_keep_it_bounded_and_consistent() -> None:
    cache: LRU[int, int] = LRU(16)
    errors: list[str] = []

    def work(offset: int) -> None:
        for i in range(2000):
            key = (i * 7 + offset) % 40
            value = cache.get_or_compute(key, lambda key=key: key * key)
            if value != key * key:
                errors.append(f"{key}: {value}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(cache) == 16
