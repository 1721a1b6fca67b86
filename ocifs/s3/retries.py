"""When a failed request is sent again, and how soon.

botocore's standard mode decides *whether* to retry: 5xx answers, throttling (429, SlowDown),
timeouts and connection errors, up to ``retries`` times.  ocifs adds 409 Conflict (OCI answers
it to concurrent updates of one object; the repeat succeeds) and decides *how soon*.  botocore
itself waits at most 50 ms × 2^attempt after an error that is not throttling, so its five
retries ride out about 1.5 s of a store that cannot be reached or answers 500: a restart of
the store, a load balancer failing over, a short network cut would all reach programs as EIO.
s3fs sleeps seconds between its retries; ocifs waits ``[0.5, 1) × BASE_DELAY × 2^attempt``
seconds (at most :data:`MAX_DELAY`) after every retryable failure, so the default five
retries span 15.5 to 31 s.

botocore's retry quota is left out: shared by every request of the mount, it stops all
retries after a few dozen failures (an outage) and refills one success at a time, so the first
transient error after the store came back would reach a program.  ocifs's requests in flight
are bounded by its thread limits, which is what the quota protects a store from.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from typing import Any, Callable, Iterator

from botocore.retries import standard

log = logging.getLogger(__name__)

BASE_DELAY = 1.0   # seconds before the first retry (times 0.5 to 1)
MAX_DELAY = 20.0   # seconds between two attempts, at most
CONFLICT = 409
RETRY_HANDLER_ID = "retry-config-s3"  # botocore's S3 retry handler, replaced here


_prior = threading.local()  # attempts made before this thread's boto3 call began


@contextlib.contextmanager
def attempts_already_made(count: int) -> Iterator[None]:
    """Count ``count`` attempts made another way (:mod:`ocifs.s3.lean`) in the pacing and
    the attempt limit of the boto3 calls this thread makes inside the block."""
    _prior.count = count
    try:
        yield
    finally:
        _prior.count = 0


class PacedRetry:
    """The ``needs-retry`` handler of an ocifs client (instead of botocore's standard one).

    ``conditions`` is botocore's standard decision (which failures, how many attempts);
    ``random`` gives the jitter (tests make it fixed).
    """

    def __init__(self, retries: int, rand: Callable[[], float] = random.random) -> None:
        self.max_attempts = retries + 1
        self.conditions = standard.StandardRetryConditions(max_attempts=self.max_attempts)
        self.adapter = standard.RetryEventAdapter()
        self.random = rand

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(MAX_DELAY, BASE_DELAY * 2 ** (attempt - 1)) * (0.5 + self.random() / 2)

    def __call__(self, **kwargs: Any) -> float | None:
        context = self.adapter.create_retry_context(**kwargs)
        context.attempt_number += getattr(_prior, "count", 0)
        delay = self.next_delay(context)
        self.adapter.adapt_retry_response_from_context(context)  # e.g. MaxAttemptsReached
        return delay

    def next_delay(self, context: standard.RetryContext) -> float | None:
        """Seconds to wait before the next attempt after this one's outcome (logged), or None
        when it is not retried."""
        if not self.retryable(context):
            return None
        delay = self.delay(context.attempt_number)
        operation = context.operation_model.name if context.operation_model else "request"
        log.info("%s failed (%s), retrying in %.1f s (attempt %d of %d)", operation,
                 _reason(context), delay, context.attempt_number + 1, self.max_attempts)
        return delay

    def retryable(self, context: standard.RetryContext) -> bool:
        """botocore's standard decision, plus 409 Conflict, for this attempt's outcome."""
        return self.conditions.is_retryable(context) or self._conflict(context)

    def _conflict(self, context: standard.RetryContext) -> bool:
        response = context.http_response
        return (response is not None and response.status_code == CONFLICT
                and context.attempt_number < self.max_attempts)


def _reason(context: standard.RetryContext) -> str:
    if context.caught_exception is not None:
        return context.caught_exception.__class__.__name__
    code = context.get_error_code()
    status = context.http_response.status_code if context.http_response is not None else "?"
    return f"{status} {code}" if code else str(status)


def install_paced_retries(client: Any, retries: int) -> PacedRetry:
    """Make ``client`` (S3) retry with :class:`PacedRetry` instead of botocore's handler."""
    events = client.meta.events
    events.unregister("needs-retry.s3", unique_id=RETRY_HANDLER_ID)
    handler = PacedRetry(retries)
    events.register("needs-retry.s3", handler, unique_id="ocifs-paced-retry")
    return handler
