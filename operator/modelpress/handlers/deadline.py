"""Store reads with a deadline, isolated per endpoint.

boto3 is synchronous: a read runs in a thread, and a thread cannot be stopped. A read
past its deadline is left to finish on its own while the reconcile reports the store
unavailable; until it returns, other reads of that endpoint are refused at once
instead of piling up more stuck threads. Other endpoints, and so other tenants, go on.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class StoreTimeout(Exception):
    """A store did not answer in time, or an earlier read of it still has not."""


class EndpointGuard:
    def __init__(self, deadline_seconds: float) -> None:
        self.deadline = deadline_seconds
        self.stuck: Counter[str] = Counter()
        """Reads past their deadline and not yet returned, by endpoint."""

    async def read(self, endpoint: str, function: Callable[..., T], *args: Any) -> T:
        if self.stuck[endpoint]:
            raise StoreTimeout(
                f"the store at {endpoint} has not answered a read for more than "
                f"{self.deadline:g} s; waiting for it before reading it again"
            )
        task = asyncio.ensure_future(asyncio.to_thread(function, *args))
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.deadline)
        except TimeoutError:
            self.stuck[endpoint] += 1

            def returned(_: Any) -> None:
                self.stuck[endpoint] -= 1
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: a late failure is not an unhandled one

            task.add_done_callback(returned)
            raise StoreTimeout(
                f"the store at {endpoint} did not answer within {self.deadline:g} s "
                "(storeDeadlineSeconds); the read goes on, and the model is retried"
            ) from None
