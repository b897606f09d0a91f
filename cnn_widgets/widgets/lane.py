"""A lane: one kind of background work of a widget, where the latest request wins.

Every panel that computes in the background (the picture, a feature visualization, a health
check, the top images) owns one lane. A request takes a :class:`Ticket`; a newer request makes
every older ticket stale. The work runs on the lane's thread (a :class:`~.runner.Runner`:
one job at a time, a waiting job replaced by a newer one, the running one asked to stop), and
whatever it wants to show goes through :meth:`Ticket.publish` — applied, in one message to
the browser, only while the ticket is still the latest — or :meth:`Ticket.fail`, which shows
the error only under the same condition. Work that is cheap enough to do at once (a cached
picture) takes a ticket and publishes on the caller's thread, through the same gate.

The counters are public so tests can read what happened instead of private fields.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from .runner import Cancelled, Runner

if TYPE_CHECKING:
    from .base import WidgetBase

__all__ = ["LRU", "Cancelled", "Lane", "Ticket"]

log = logging.getLogger(__name__)


class Ticket:
    """One request on a lane. ``stop`` is set when a newer request wants the thread."""

    __slots__ = ("generation", "lane", "stop")

    def __init__(self, lane: Lane, generation: int) -> None:
        self.lane = lane
        self.generation = generation
        self.stop = threading.Event()

    @property
    def current(self) -> bool:
        """True while no newer request was made on the lane."""
        return self.generation == self.lane.generation

    def check(self) -> None:
        """Raise :class:`Cancelled` when the work is no longer wanted (between steps)."""
        if self.stop.is_set() or not self.current:
            raise Cancelled

    def publish(self, apply: Callable[[], Any]) -> bool:
        """Run ``apply`` (which sets traits) under the widget's lock, in one message, if this
        ticket is still the latest; False when it was dropped."""
        return self.lane.publish(self, apply)

    def fail(self, exc: BaseException | str, apply: Callable[[], Any] | None = None) -> bool:
        """Show ``exc`` in the widget's ``error`` (and run ``apply``) if still the latest."""
        return self.lane.fail(self, exc, apply)


class Lane:
    """Background work of one kind for one widget.

    Parameters
    ----------
    widget:
        The widget whose traits the work publishes (its ``_lock``, ``hold_sync`` and
        ``_report`` are used).
    name:
        Names the thread (``cnn-widgets-<name>``) and the lane in messages.
    on_fail:
        Called (under the lock, inside the same message) after a current ticket's error is
        shown: the panel resets its own progress traits there.

    Attributes
    ----------
    requested, started, published, dropped, failed:
        Tickets taken; jobs that began running; publishes applied; publishes and failures
        of stale tickets that were dropped; failures shown.
    """

    def __init__(
        self,
        widget: WidgetBase,
        name: str,
        on_fail: Callable[[], Any] | None = None,
    ) -> None:
        self.widget = widget
        self.name = name
        self.generation = 0
        self.requested = 0
        self.started = 0
        self.published = 0
        self.dropped = 0
        self.failed = 0
        self._on_fail = on_fail
        self._runner = Runner(self._escaped, name=f"cnn-widgets-{name}")

    # -- requests ------------------------------------------------------------------------
    def request(self) -> Ticket:
        """A new ticket; every older one becomes stale."""
        with self.widget._lock:
            self.generation += 1
            self.requested += 1
            return Ticket(self, self.generation)

    def retire(self, *, cancel: bool = False) -> None:
        """Make every outstanding ticket stale (and with ``cancel``, stop the running job)."""
        with self.widget._lock:
            self.generation += 1
        if cancel:
            self._runner.cancel()

    def run(self, ticket: Ticket, job: Callable[[Ticket], Any]) -> None:
        """Run ``job(ticket)`` on the lane's thread, replacing a job that waits to start.

        An exception from the job is shown through :meth:`fail` (when the ticket is still
        current); :class:`Cancelled` ends it quietly.
        """

        def work(stop: threading.Event) -> None:
            ticket.stop = stop
            if not ticket.current:
                raise Cancelled  # a newer request came before this one started
            self.started += 1
            try:
                job(ticket)
            except Cancelled:
                raise
            except Exception as exc:
                self.fail(ticket, exc)

        self._runner.submit(work)

    def submit(self, job: Callable[[Ticket], Any]) -> Ticket:
        """:meth:`request` a ticket and :meth:`run` ``job`` with it."""
        ticket = self.request()
        self.run(ticket, job)
        return ticket

    # -- results ---------------------------------------------------------------------------
    def publish(self, ticket: Ticket, apply: Callable[[], Any]) -> bool:
        widget = self.widget
        with widget._lock:
            if not ticket.current:
                self.dropped += 1
                return False
            with widget.hold_sync():
                apply()
            self.published += 1
            return True

    def fail(
        self, ticket: Ticket, exc: BaseException | str, apply: Callable[[], Any] | None = None
    ) -> bool:
        widget = self.widget
        with widget._lock:
            if not ticket.current:
                self.dropped += 1
                log.debug("%s: dropped the error of a superseded request: %r", self.name, exc)
                return False
            with widget.hold_sync():
                widget._report(exc)
                if apply is not None:
                    apply()
                if self._on_fail is not None:
                    self._on_fail()
            self.failed += 1
            return True

    def _escaped(self, exc: BaseException) -> None:
        # Last resort: an error raised outside a job's own handling (in fail() itself, say).
        with self.widget._lock, self.widget.hold_sync():
            self.widget._report(exc)
            if self._on_fail is not None:
                self._on_fail()

    # -- the thread ------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while a job runs or waits to run."""
        return self._runner.busy

    @property
    def superseded(self) -> int:
        """Jobs replaced by a newer one before they started."""
        return self._runner.superseded

    @property
    def thread(self) -> threading.Thread | None:
        """The lane's thread, once started (None before the first job)."""
        return self._runner.thread

    def cancel(self) -> None:
        """Drop the waiting job and ask the running one to stop."""
        self._runner.cancel()

    def wait(self, timeout: float | None) -> bool:
        """Block until no job runs or waits; False when ``timeout`` passed first."""
        return self._runner.wait(timeout)

    def close(self) -> None:
        """Stop the thread (the running job is asked to stop)."""
        self._runner.close()


class LRU:
    """A small thread-safe least-recently-used cache of a lane's results."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """The value of ``key`` (now the most recent), or None."""
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
