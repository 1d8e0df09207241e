"""The reconciler's lease on SQLite and PostgreSQL: racing workers never lease one attempt
twice in one round, a released attempt whose next look is later is not leased again, and a
lease is exclusive until it runs out."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from scanpay.domain.model import AttemptStatus
from scanpay.store.sql import SqlStore
from tests.store.test_store import NOW, new_pair

LATER = NOW + timedelta(seconds=10)


def _due_attempts(store: SqlStore, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        order, attempt = new_pair()
        attempt = dataclasses.replace(attempt, status=AttemptStatus.ACTIVE, next_query_at=NOW)
        store.create_order_sync(order, attempt, None)
        ids.append(attempt.id)
    return ids


def test_racing_workers_lease_each_due_attempt_once(store: SqlStore) -> None:
    """Four workers lease small batches and release each attempt with its next look in the
    future, as a reconciler pass does: every attempt is looked at exactly once."""
    ids = _due_attempts(store, 40)
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(4)

    def work(worker: str) -> None:
        start.wait()
        while batch := store.claim_due_sync(NOW, worker, 60, 3):
            for attempt in batch:
                with lock:
                    seen[attempt.id] += 1
                assert store.release_sync(attempt.id, worker, LATER, True)

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(work, f"w{i}") for i in range(4)]:
            future.result()
    assert seen == Counter(ids)
    assert store.claim_due_sync(NOW, "late", 60, 100) == []
    assert {a.query_count for a in store.attempts_sync()} == {1}


def test_lease_is_exclusive_until_it_runs_out(store: SqlStore) -> None:
    [attempt_id] = _due_attempts(store, 1)
    [mine] = store.claim_due_sync(NOW, "a", 60, 10)
    assert mine.id == attempt_id
    assert store.claim_due_sync(NOW, "b", 60, 10) == []
    assert store.claim_sync(attempt_id, NOW + timedelta(seconds=59), "b", 60) is None
    # "a" died: its lease runs out and "b" takes over; "a" can no longer release it
    [theirs] = store.claim_due_sync(NOW + timedelta(seconds=61), "b", 60, 10)
    assert theirs.id == attempt_id
    assert not store.release_sync(attempt_id, "a", None, True)
    assert store.release_sync(attempt_id, "b", LATER, True)
    assert store.get_attempt_sync(attempt_id).query_count == 1


def test_batch_is_the_earliest_due_first(store: SqlStore) -> None:
    ids = _due_attempts(store, 5)
    for n, attempt_id in enumerate(ids):
        store.schedule_sync(attempt_id, NOW - timedelta(seconds=n))
    store.schedule_sync(ids[0], LATER)  # not due
    batch = store.claim_due_sync(NOW, "a", 60, 2)
    assert [a.id for a in batch] == [ids[4], ids[3]]
