"""A per-key work queue on asyncio: debounced, one worker per key at a time, retried with backoff.

Watch events only ``enqueue(key)``; the processing function runs later, at most once at a time
for a key, and once more if the key was enqueued again while it ran (level-triggered: it always
works from the latest state, so coalescing many events into one run loses nothing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

logger = logging.getLogger("finetune_operator.workqueue")
K = TypeVar("K", bound=Hashable)
MAX_BACKOFF = 60.0


class RetryLater(Exception):
    """Run the key again after ``delay`` seconds: waiting on something, not a failure."""

    def __init__(self, message: str, delay: float):
        super().__init__(message)
        self.delay = delay


def backoff(failures: int) -> float:
    """Seconds before retry number ``failures`` (1, 2, ...): 1 s doubling up to a minute."""
    return min(MAX_BACKOFF, 0.5 * 2.0 ** min(failures, 7))


class WorkQueue(Generic[K]):
    """``enqueue(key, delay)`` schedules ``process(key)``; an earlier schedule wins over a later one.

    When ``process`` raises, the key runs again after ``RetryLater.delay`` or an exponential
    ``backoff``; ``on_failure(key, error)`` is told of every failure but RetryLater.
    """

    def __init__(
        self,
        process: Callable[[K], Awaitable[None]],
        on_failure: Callable[[K, Exception], None] = lambda key, error: None,
    ):
        self._process = process
        self._on_failure = on_failure
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._running: set[K] = set()
        self._dirty: set[K] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: dict[K, int] = {}

    def enqueue(self, key: K, delay: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        handle = self._timers.get(key)
        if handle is not None:
            if handle.when() <= when:
                return
            handle.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def forget(self, key: K) -> None:
        """Drop a pending run and the failure count of a key that no longer exists."""
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        """Consecutive failed runs of ``key`` (0 after a success)."""
        return self._failures.get(key, 0)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        if key in self._running:
            self._dirty.add(key)
            return
        self._running.add(key)
        task = asyncio.create_task(self._run(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: K) -> None:
        try:
            while True:
                self._dirty.discard(key)
                try:
                    await self._process(key)
                    self._failures.pop(key, None)
                except RetryLater as e:
                    logger.info("%s: %s (again in %.1fs)", key, e, e.delay)
                    self.enqueue(key, e.delay)
                except Exception as e:  # noqa: BLE001 - every failure is retried
                    failures = self._failures[key] = self._failures.get(key, 0) + 1
                    delay = backoff(failures)
                    logger.warning("processing %s failed (retry in %.1fs): %s", key, delay, e)
                    self._on_failure(key, e)
                    self.enqueue(key, delay)
                if key not in self._dirty:
                    break
        finally:
            self._running.discard(key)
