"""One background thread per widget that runs the most recent request and nothing older.

A widget asks for work much faster than a forward pass can finish: dragging through a layer
list fires a request per step. Only the last one matters, so the runner keeps a single pending
slot. A new request replaces the pending one and sets the stop :class:`threading.Event` of the
one that is running; long work checks that event between its steps and returns early.

Exceptions never disappear in the thread: every one that escapes a job goes to ``on_error``
(and is logged if that callback fails too).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Cancelled", "Job", "Runner"]

log = logging.getLogger(__name__)

Job = Callable[[threading.Event], object]
"""A unit of work: called on the worker thread with the stop event it must check."""


class Cancelled(Exception):
    """Raise from a job to leave early because its stop event is set; not reported."""


class Runner:
    """Run submitted jobs on one daemon thread, latest request wins.

    Parameters
    ----------
    on_error:
        Called on the worker thread with any exception a job raises (except
        :class:`Cancelled`).
    name:
        Thread name, shown in debuggers and ``threading.enumerate()``.

    Notes
    -----
    The thread starts on the first :meth:`submit` and lives until :meth:`close`. Jobs run one at
    a time, in the thread, so a job never races another job of the same runner.
    """

    def __init__(
        self, on_error: Callable[[BaseException], object], *, name: str = "cnn-widgets-worker"
    ) -> None:
        self._on_error = on_error
        self._name = name
        self._cond = threading.Condition()
        self._pending: Job | None = None
        self._stop: threading.Event | None = None  # the running job's event
        self._running = False
        self._closed = False
        self._thread: threading.Thread | None = None
        #: Jobs replaced before they started (for tests and diagnostics).
        self.superseded = 0
        #: Jobs that ran to the end or raised (not counting superseded ones).
        self.completed = 0

    # -- the caller's side ---------------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Run ``job`` after the current one; replaces any job still waiting to start and
        asks the running one to stop."""
        with self._cond:
            if self._closed:
                raise RuntimeError("this runner is closed")
            if self._pending is not None:
                self.superseded += 1
            self._pending = job
            if self._stop is not None:
                self._stop.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def cancel(self) -> None:
        """Drop the waiting job and ask the running one to stop."""
        with self._cond:
            if self._pending is not None:
                self.superseded += 1
                self._pending = None
            if self._stop is not None:
                self._stop.set()
            self._cond.notify_all()

    @property
    def busy(self) -> bool:
        """True while a job runs or waits to run."""
        with self._cond:
            return self._running or self._pending is not None

    @property
    def thread(self) -> threading.Thread | None:
        """The worker thread once started (None before the first job)."""
        return self._thread

    def in_worker(self) -> bool:
        """True when called from the runner's own thread."""
        return threading.current_thread() is self._thread

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no job runs or waits; False if ``timeout`` seconds passed first."""
        if self.in_worker():
            raise RuntimeError("wait() called from the worker thread would wait for itself")
        with self._cond:
            return self._cond.wait_for(lambda: not (self._running or self._pending), timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the thread: the waiting job is dropped, the running one is asked to stop."""
        with self._cond:
            self._closed = True
            self._pending = None
            if self._stop is not None:
                self._stop.set()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and not self.in_worker():
            thread.join(timeout)

    # -- the worker's side ---------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._pending is None:  # closed and nothing left
                    return
                job, self._pending = self._pending, None
                stop = threading.Event()
                self._stop, self._running = stop, True
            try:
                job(stop)
            except Cancelled:
                pass
            except Exception as exc:
                self._deliver(exc)
            finally:
                with self._cond:
                    self._stop, self._running = None, False
                    self.completed += 1
                    self._cond.notify_all()

    def _deliver(self, exc: BaseException) -> None:
        try:
            self._on_error(exc)
        except Exception:
            # The error handler failed as well: the log is the last place left to say so.
            log.exception("error handler of %s failed; original error: %r", self._name, exc)
