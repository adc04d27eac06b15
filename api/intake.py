"""Group commit for events: the requests that arrive while one transaction is being written wait
and are stored together in the next one.

Each event costs a database round trip or two less, a commit less and, for split steps, a broker
message less; and the worker runs the batch's jobs as one run (worker.engine), where a play costs
a third of a lone one. Under load the batches grow by themselves. While events come closer
together than the linger, a batch also waits that long from its first event's arrival for
company (PASSFLOW_INTAKE_LINGER_MS); a lone event (none that close before it) waits for
nobody.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.concurrency import run_in_threadpool

from passflow.events import EventIn
from worker import dispatch, jobs


@dataclass(frozen=True)
class _Waiting:
    event: EventIn
    request_id: str | None
    future: asyncio.Future[jobs.Accepted]
    arrived: float  # the event loop's clock


class Intake:
    def __init__(self, *, default_service_provider: str, max_batch: int = 200,
                 linger_s: float = 0.0):
        self.default_service_provider = default_service_provider
        self.max_batch = max_batch
        self.linger_s = linger_s
        self._pending: list[_Waiting] = []
        self._draining: asyncio.Task[None] | None = None
        self._last_arrival = -math.inf
        self._close_together = False  # the last event came within linger_s of the one before

    async def submit(self, event: EventIn, request_id: str | None = None) -> jobs.Accepted:
        """Store the event (with whatever else is waiting) and send its first step; the job
        keeps `request_id` for its logs."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[jobs.Accepted] = loop.create_future()
        now = loop.time()
        self._close_together = now - self._last_arrival < self.linger_s
        self._last_arrival = now
        self._pending.append(_Waiting(event, request_id, future, now))
        draining = self._draining
        if draining is None or draining.done() or draining.get_loop() is not loop:
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            wait = self._pending[0].arrived + self.linger_s - loop.time()
            if self._close_together and wait > 0 and len(self._pending) < self.max_batch:
                await asyncio.sleep(wait)
            batch = self._pending[:self.max_batch]
            del self._pending[:self.max_batch]
            answers = await run_in_threadpool(
                self._store, [w.event for w in batch],
                {w.event.event_id: w.request_id for w in batch if w.request_id})
            for waiting, answer in zip(batch, answers, strict=True):
                future = waiting.future
                if future.done():  # the caller went away; its event is stored all the same
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    def _store(self, events: list[EventIn], request_ids: dict[str, str] | None = None
               ) -> list[jobs.Accepted | Exception]:
        try:
            return list(dispatch.submit_many(
                events, default_service_provider=self.default_service_provider,
                request_ids=request_ids))
        except (OperationalError, InterfaceError, SQLAlchemyTimeoutError) as exc:
            # The database is unreachable or overloaded: every event hears so at once (503).
            return [exc] * len(events)
        except Exception as exc:
            if len(events) == 1:
                return [exc]
        # Nothing of the batch was stored (one transaction). Each event alone, so one that
        # cannot be stored does not fail the others.
        return [answer for event in events for answer in self._store([event], request_ids)]
