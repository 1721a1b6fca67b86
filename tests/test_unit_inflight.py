"""The HEADs a listing keeps in flight follow the round trip (ocifs.s3.inflight)."""

import errno
import threading
import time

import pytest
import trio

from concurrency import InFlight
from ocifs.s3.errors import StoreError
from ocifs.s3.inflight import HeadThreads, InFlightGoal
from ocifs.s3.store import Store


@pytest.fixture
def store():
    return Store(object(), "bucket")  # no request reaches the client: _head_sync is replaced


def test_goal_starts_low_and_follows_the_fastest_recent_round_trip():
    goal = InFlightGoal(8, 64, cpu_per_head=0.25e-3, window=4)
    assert goal.goal() == 8 and goal.round_trip() is None
    goal.observe(0.0004)  # a local store: the CPU sets the pace
    assert goal.goal() == 8
    for seconds in (0.030, 0.021, 0.025, 0.022):  # 20 ms away: the window forgot 0.4 ms
        goal.observe(seconds)
    assert goal.round_trip() == 0.021
    assert goal.goal() == 64  # 84 + 2 wanted, bounded
    for _ in range(4):
        goal.observe(0.004)
    assert goal.goal() == 16 + 2


def test_queueing_does_not_raise_the_goal():
    """Answers slowed by many in flight leave the fastest one as the estimate."""
    goal = InFlightGoal(2, 64, cpu_per_head=0.25e-3, window=64)
    goal.observe(0.001)
    for i in range(1, 64):
        goal.observe(0.001 + i * 0.001)  # up to 64 ms, as 64 in flight queue up
    assert goal.goal() == 4 + 2


def test_head_batch_grows_to_cover_a_long_round_trip(store, monkeypatch):
    """20 ms HEADs: the batch starts with a few threads and grows towards the goal."""
    counter = InFlight()

    def slow_head(key):
        started = time.perf_counter()
        with counter:
            time.sleep(0.02)
        store.head_goal.observe(time.perf_counter() - started)
        return {"ContentLength": 0}
    monkeypatch.setattr(store, "_head_sync", slow_head)
    heads = trio.run(store.head_many, [f"k{i}" for i in range(300)])
    assert len(heads) == 300
    assert counter.most > 32  # 8 at first, then what 20 ms asks for (about 80)
    assert store.head_goal.goal() >= 80


def test_head_batch_stays_small_near_the_store(store, monkeypatch):
    def fast_head(key):
        time.sleep(0.0002)
        store.head_goal.observe(0.0002)  # as measured on a quiet machine (not timed here:
        return {"ContentLength": 0}      # a loaded one would make the round trip longer)
    monkeypatch.setattr(store, "_head_sync", fast_head)
    before = threading.active_count()
    seen = []

    def count_threads(key):
        seen.append(threading.active_count() - before)
        return fast_head(key)
    monkeypatch.setattr(store, "_head_sync", count_threads)
    trio.run(store.head_many, [f"k{i}" for i in range(300)])
    assert max(seen) <= store.head_goal.lowest + 2  # the batch's own (and trio's worker)


def test_head_threads_are_kept_and_bounded():
    pool = HeadThreads(3)
    done = threading.Semaphore(0)
    for _ in range(20):  # one after another: one thread serves them all
        pool.submit(done.release)
        done.acquire()
        deadline = time.monotonic() + 5
        while pool.idle != 1 and time.monotonic() < deadline:  # back to waiting for a job
            time.sleep(0.001)
    assert pool.threads == 1
    counter = InFlight()
    gate = threading.Event()

    def blocking():
        with counter:
            gate.wait()
        done.release()
    for _ in range(10):
        pool.submit(blocking)
    time.sleep(0.1)
    assert counter.most == 3 and pool.threads == 3 and pool.waiting == 7
    gate.set()
    for _ in range(10):
        assert done.acquire(timeout=5)
    assert pool.waiting == 0 and pool.idle == 3


def test_many_small_batches_reuse_the_threads(store, monkeypatch):
    monkeypatch.setattr(store, "_head_sync", lambda key: {"ContentLength": len(key)})

    async def batches():
        for batch in range(50):
            heads = await store.head_many([f"b{batch}/{i}" for i in range(5)])
            keys = [f"b{batch}/{i}" for i in range(5)]
            assert heads == {key: {"ContentLength": len(key)} for key in keys}
    trio.run(batches)
    assert store.head_threads.threads <= store.head_goal.lowest


def test_a_bug_in_one_head_fails_its_batch_and_keeps_the_threads(store, monkeypatch):
    def head(key):
        if key == "k3":
            raise RuntimeError("a bug")
        return {"ContentLength": 1}
    monkeypatch.setattr(store, "_head_sync", head)
    with pytest.raises(StoreError) as info:
        trio.run(store.head_many, [f"k{i}" for i in range(10)])
    assert info.value.errno == errno.EIO and "k3" in str(info.value)
    heads = trio.run(store.head_many, [f"j{i}" for i in range(10)])
    assert len(heads) == 10


def test_a_job_that_raises_leaves_its_thread_serving():
    pool = HeadThreads(1)
    done = threading.Event()

    def boom():
        raise RuntimeError("a bug")
    pool.submit(boom)
    pool.submit(done.set)
    assert done.wait(5) and pool.threads == 1
