"""The work queue: each model once in the queue, never worked on twice at once,
scheduled for the earliest time asked."""

from __future__ import annotations

import asyncio

from modelpress.handlers.workqueue import WorkQueue


async def test_a_key_added_twice_is_queued_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a"):
        queue.add(key)
    assert len(queue) == 2
    assert [await queue.get(), await queue.get()] == ["a", "b"]


async def test_a_key_added_while_worked_on_waits_for_the_run_to_end() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")
    assert len(queue) == 0, "never handed to a second worker while the first runs"
    assert queue.busy("a")
    queue.done("a")
    assert not queue.busy("a") and await queue.get() == "a"


async def test_workers_never_overlap_on_one_key() -> None:
    queue: WorkQueue[int] = WorkQueue()
    running: set[int] = set()
    overlaps = []
    runs = {key: 0 for key in range(5)}

    async def worker() -> None:
        while True:
            key = await queue.get()
            if key in running:
                overlaps.append(key)
            running.add(key)
            await asyncio.sleep(0.001)
            runs[key] += 1
            running.discard(key)
            queue.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for _ in range(50):
        for key in runs:
            queue.add(key)
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    assert overlaps == []
    assert all(count >= 1 for count in runs.values())
    assert sum(runs.values()) < 5 * 50, "adds while queued or running were merged"


async def test_the_earliest_schedule_wins_and_forget_drops_it() -> None:
    queue: WorkQueue[str] = WorkQueue()
    schedule = asyncio.create_task(queue.run_schedule())
    try:
        queue.add_after("late", 0.3)
        queue.add_after("soon", 10)
        queue.add_after("soon", 0.05)  # earlier: wins
        queue.add_after("soon", 5)  # later: ignored
        queue.add_after("gone", 0.05)
        queue.forget("gone")
        assert await asyncio.wait_for(queue.get(), 1) == "soon"
        assert await asyncio.wait_for(queue.get(), 1) == "late"
        await asyncio.sleep(0.1)
        assert len(queue) == 0, "the forgotten key never comes"
    finally:
        schedule.cancel()


async def test_an_add_replaces_a_pending_schedule() -> None:
    queue: WorkQueue[str] = WorkQueue()
    schedule = asyncio.create_task(queue.run_schedule())
    try:
        queue.add_after("a", 0.05)
        queue.add("a")
        assert await queue.get() == "a"
        queue.done("a")
        await asyncio.sleep(0.1)
        assert len(queue) == 0, "the schedule was used up by the add"
    finally:
        schedule.cancel()
