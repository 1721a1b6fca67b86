"""How many HEADs of a listing to keep in flight (enough to cover the round trip, no more),
and the threads that send them.

A cold ``ls -l`` is one HEAD per entry, sent by threads of the daemon's own.  Far from the
store, the round trip sets the pace and many HEADs must be in flight (about 90 at 20 ms).  Near
it, the client's CPU does: Python runs one thread at a time, and each thread beyond what
the round trip needs only adds hand-offs of the interpreter between threads (measured on
a local store, 500 HEADs: 0.19 ms of CPU a HEAD with 4 or 8 threads, 0.25 ms with 64, and
the batch slower too).  By Little's law the HEADs worth keeping in flight are the round
trip over the client's time per HEAD; the round trip is the fastest of the recent HEADs
(queueing at the store or in the client only makes them slower, as in TCP's min-RTT
estimators), so that more threads do not feed on the delays they add.
"""

from __future__ import annotations

import collections
import logging
import math
import queue
import threading
from typing import Callable

log = logging.getLogger(__name__)
# A job for HeadThreads: what it returns (if not None) is called once its thread is free
Job = Callable[[], "Callable[[], None] | None"]

CPU_PER_HEAD = 0.25e-3  # seconds of client CPU one HEAD costs, about (benchmarks/request_cpu)
WINDOW = 64             # recent HEADs whose fastest round trip is the estimate
SLACK = 2               # threads beyond the estimate, for the jitter of the round trip


class InFlightGoal:
    """The number of HEADs to keep in flight, from the round trips of the recent ones.

    :meth:`observe` is called from any thread (a deque's append is atomic); with nothing
    observed yet the goal is ``lowest``, and a batch grows to the goal as its first answers
    come back.
    """

    def __init__(self, lowest: int, highest: int, cpu_per_head: float = CPU_PER_HEAD,
                 window: int = WINDOW) -> None:
        self.lowest = lowest
        self.highest = highest
        self.cpu_per_head = cpu_per_head
        self.recent: collections.deque[float] = collections.deque(maxlen=window)

    def observe(self, seconds: float) -> None:
        """One HEAD's time from sending to its answer."""
        self.recent.append(seconds)

    def round_trip(self) -> float | None:
        """The fastest recent HEAD (None: none yet)."""
        try:
            return min(self.recent)
        except ValueError:  # empty (or emptied meanwhile)
            return None

    def goal(self) -> int:
        rtt = self.round_trip()
        if rtt is None:
            return self.lowest
        wanted = math.ceil(rtt / self.cpu_per_head) + SLACK
        return max(self.lowest, min(self.highest, wanted))


class HeadThreads:
    """Daemon threads kept for the HEADs of listings, at most ``most`` of them.

    ``find`` lists many small directories, one HEAD batch each: starting a batch's threads
    anew cost a tenth of its CPU (7% of the daemon's samples in a cold ``find`` went to
    ``Thread.start``).  A job given to :meth:`submit` runs on an idle thread, else on a new
    one while there are fewer than ``most``, else once one is free.  Daemons, like trio's
    worker threads: a stop never waits for a HEAD that hangs.
    """

    def __init__(self, most: int) -> None:
        self.most = most
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads = 0
        self.idle = 0     # threads waiting for a job and not promised one
        self.waiting = 0  # jobs queued that no thread was promised

    def submit(self, job: Job) -> None:
        """Run ``job()`` on one of the threads (what it raises is logged).  What it returns,
        if not None, is called once the thread is free again, so that a caller it wakes
        and that submits more finds the thread idle instead of starting another."""
        with self.lock:
            if self.idle:
                self.idle -= 1
            elif self.threads < self.most:
                threading.Thread(target=self._serve, name="ocifs-head", daemon=True).start()
                self.threads += 1
            else:
                self.waiting += 1
        self.jobs.put(job)

    def _serve(self) -> None:
        while True:
            job = self.jobs.get()
            after = None
            try:
                after = job()
            except Exception:  # noqa: BLE001 - the thread stays for the next job
                log.exception("a HEAD job failed")
            with self.lock:
                if self.waiting:
                    self.waiting -= 1  # this thread takes one of them
                else:
                    self.idle += 1
            if after is not None:
                after()
