"""Live maps: a model loaded once by ``salience serve --model`` computes any class's map with
any registered method, one computation at a time.

:func:`salience.server.run_cache.attach` checks the model against every run the server shows
(:func:`salience.live.mismatch`) and hangs a :class:`LiveModel` on the run cache. The routes in
:mod:`salience.server.routes.live` run each computation through :meth:`LiveModel.run`: at most
``queue`` requests hold a place (the rest are refused at once with 503), one computes at a time
(a lock), and a request that waits or computes longer than ``time_limit_s`` is answered 503
while the work goes on and lands in the image cache for the next request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from fastapi import HTTPException

from salience.live import for_run
from salience.models import LoadedModel
from salience.store import Run

T = TypeVar("T")

NO_MODEL = (
    "no model is loaded: start salience serve with --model SPEC (and --weights FILE) to "
    "compute maps for other classes and methods"
)


class LiveModel:
    """The server's one loaded model, its per-run views (the run's preprocessing) and the
    bounded queue in front of it."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        time_limit_s: float = 60.0,
        queue: int = 8,
    ) -> None:
        self.loaded = loaded
        self.time_limit_s = time_limit_s
        self.lock = threading.Lock()  # held while a map is computed
        self._slots = threading.BoundedSemaphore(queue)
        self._pool = ThreadPoolExecutor(max_workers=queue, thread_name_prefix="salience-live")
        self._views: dict[str, LoadedModel] = {}

    @property
    def classes(self) -> int | None:
        """The model's number of outputs, when a forward pass told."""
        return self.loaded.num_classes

    def model_for(self, run_id: str, run: Run) -> LoadedModel:
        """The model with the recorded preprocessing of ``run`` (served as ``run_id``)."""
        view = self._views.get(run_id)
        if view is None:
            view = self._views[run_id] = for_run(self.loaded, run)
        return view

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` in a worker thread under the lock; 503 with a one-line reason when the
        queue is full or the time limit passes (the work then finishes in the background)."""
        if not self._slots.acquire(blocking=False):
            raise HTTPException(
                503, "the server is busy computing other maps; try again in a moment"
            )
        try:
            future: Future[T] = self._pool.submit(self._locked, work)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # never unretrieved
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.time_limit_s)
        except TimeoutError:
            raise HTTPException(
                503,
                f"this map is taking longer than {self.time_limit_s:g} s; it will be ready "
                "in the cache when it is done, try again later",
            ) from None

    def _locked(self, work: Callable[[], T]) -> T:
        try:
            if not self.lock.acquire(timeout=self.time_limit_s):
                raise HTTPException(
                    503, "another map is still being computed; try again in a moment"
                )
            try:
                return work()
            finally:
                self.lock.release()
        finally:
            self._slots.release()
