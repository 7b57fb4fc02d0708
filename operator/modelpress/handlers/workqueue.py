"""A work queue of model keys, as Kubernetes controllers keep one (client-go's workqueue).

- A key waiting is queued once, however often it is added.
- A key being worked on is never handed to a second worker; added meanwhile, it is
  queued again when the first is done.
- `add_after` schedules a key for later (resync, backoff); the earliest time wins.

What it keeps per model is a set entry and, while scheduled, a heap entry: the
operator's memory per model does not depend on how many are being worked on.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import deque
from typing import Generic, TypeVar

Key = TypeVar("Key")


class WorkQueue(Generic[Key]):
    def __init__(self) -> None:
        self._ready: deque[Key] = deque()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._again: set[Key] = set()
        self._due: dict[Key, float] = {}
        self._schedule: list[tuple[float, int, Key]] = []
        self._order = itertools.count()
        self._has_ready = asyncio.Event()
        self._rescheduled = asyncio.Event()

    def __len__(self) -> int:
        return len(self._ready)

    def add(self, key: Key) -> None:
        """Work on `key` as soon as a worker is free (after the current run, if any)."""
        self._due.pop(key, None)
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._has_ready.set()

    def add_after(self, key: Key, delay: float) -> None:
        """Work on `key` in `delay` seconds, unless it is due sooner already."""
        when = asyncio.get_running_loop().time() + max(0.0, delay)
        if key in self._due and self._due[key] <= when:
            return
        self._due[key] = when
        heapq.heappush(self._schedule, (when, next(self._order), key))
        self._rescheduled.set()

    def forget(self, key: Key) -> None:
        """Drop what is scheduled for `key` (a deleted model); a run in progress finishes."""
        self._due.pop(key, None)
        self._again.discard(key)
        if key in self._queued:
            self._queued.discard(key)
            self._ready.remove(key)

    async def get(self) -> Key:
        """The next key to work on; call `done` with it afterwards."""
        while not self._ready:
            self._has_ready.clear()
            await self._has_ready.wait()
        key = self._ready.popleft()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Key) -> None:
        self._active.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def busy(self, key: Key) -> bool:
        return key in self._active

    async def run_schedule(self) -> None:
        """Move scheduled keys to the queue when they are due; runs until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            self._rescheduled.clear()
            now = loop.time()
            while self._schedule and self._schedule[0][0] <= now:
                when, _, key = heapq.heappop(self._schedule)
                if self._due.get(key) == when:
                    del self._due[key]
                    self.add(key)
            if len(self._schedule) > 2 * len(self._due) + 64:
                # Entries superseded by an earlier time or an add: rebuild, keep it small.
                self._schedule = [(w, o, k) for w, o, k in self._schedule if self._due.get(k) == w]
                heapq.heapify(self._schedule)
            timeout = self._schedule[0][0] - now if self._schedule else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescheduled.wait(), timeout)
