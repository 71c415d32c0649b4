"""The worker: one thread steps the Scheduler; HTTP handlers submit requests and await them in asyncio.

    worker = Worker(scheduler); worker.start()
    sub = worker.submit(request, notify=lambda done, total, token: token == eol)   # in a handler
    async for done, total, token in sub.events(): ...                              # optional progress
    tokens = await sub.result()

Scheduler callbacks run on the worker thread; they reach the event loop only through
`call_soon_threadsafe`, and only when `notify` asks for them (e.g. once per image row), so a handler
wakes up as often as it has something to send, not once per token of every request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from emu3.generate.scheduler import Cancelled, Request, Scheduler, Ticket

log = logging.getLogger(__name__)

Notify = Callable[[int, int, int], bool]  # (done, total, token) -> should the handler hear of it?


class Worker:
    def __init__(self, scheduler: Scheduler, on_step: Callable[[Scheduler], None] | None = None) -> None:
        self.scheduler = scheduler
        self.on_step = on_step
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="emu3-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel everything queued or running and join the thread."""
        self._stop.set()
        self.scheduler.cancel_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, request: Request, *, notify: Notify | None = None) -> Submission:
        """Queue `request` (raises QueueFull / ValueError as Scheduler.submit); call from the event loop."""
        sub = Submission(asyncio.get_running_loop())
        if notify is not None:
            request = replace(request, on_progress=sub._progress_callback(notify))
        sub.ticket = self.scheduler.submit(request)
        sub.ticket.add_done_callback(sub._done_callback)
        return sub

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.scheduler.wait_for_work(0.1):
                    self.scheduler.step()
                    if self.on_step is not None:
                        self.on_step(self.scheduler)
            except Exception:  # Scheduler.step contains its own failures; this is the last guard
                log.exception("scheduler step raised")


class Submission:
    """A scheduler ticket seen from asyncio."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ticket: Ticket | None = None
        self.future: asyncio.Future[Ticket] = loop.create_future()
        self._events: asyncio.Queue[tuple[int, int, int] | None] = asyncio.Queue()

    def cancel(self) -> None:
        if self.ticket is not None:
            self.ticket.cancel()

    async def result(self) -> list[int]:
        """The generated tokens; raises Cancelled, or the error the request failed with."""
        ticket = await asyncio.shield(self.future)
        if ticket.status == "cancelled":
            raise Cancelled(f"request {ticket.id} was cancelled")
        if ticket.error is not None:
            raise ticket.error
        return list(ticket.tokens)

    async def events(self) -> AsyncIterator[tuple[int, int, int]]:
        """Progress events chosen by `notify`, until the request ends."""
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    def _progress_callback(self, notify: Notify) -> Callable[[int, int, int], None]:
        def progress(done: int, total: int, token: int) -> None:
            if notify(done, total, token):
                self.loop.call_soon_threadsafe(self._events.put_nowait, (done, total, token))

        return progress

    def _done_callback(self, ticket: Ticket) -> None:
        def resolve() -> None:
            if not self.future.done():
                self.future.set_result(ticket)
            self._events.put_nowait(None)

        try:
            self.loop.call_soon_threadsafe(resolve)
        except RuntimeError:  # the event loop is closed: nobody is waiting any more
            pass
