"""The shared AnyWidget base: front-end files, strict keyword arguments, guarded front-end input,
the lanes of background work, and the static PNG a notebook keeps when it is exported.

Every widget of the package renders with the one ES module in ``cnn_widgets/static``; what it
shows is decided by the synced traits alone, so the same module serves all widget classes.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import anywidget
import numpy as np
import traitlets

from ..render import Rendered, readable_png
from .lane import Lane

__all__ = ["STATIC", "WAIT_TIMEOUT", "WidgetBase"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"
"""Folder of ``widget.js`` and ``widget.css``."""

WAIT_TIMEOUT = 120.0
"""Seconds :meth:`WidgetBase.wait` waits by default."""


class WidgetBase(anywidget.AnyWidget):
    """Base class of the cnn_widgets widgets.

    Subclasses list the keyword arguments they accept in ``_options`` (anything else raises
    :class:`TypeError`, so a typo fails loudly); each panel lists the traits the browser may
    write in ``_writable`` (anything else the browser sends is ignored). Panels register their
    background work with :meth:`_lane`; :meth:`wait` and :meth:`close` cover every lane.
    """

    _esm = STATIC / "widget.js"
    _css = STATIC / "widget.css"

    _options: ClassVar[tuple[str, ...]] = ()
    #: Traits the browser may write, declared by each panel for its own traits ...
    _writable: ClassVar[frozenset[str]] = frozenset()
    #: ... and combined over every panel a widget is made of.
    _frontend_writable: ClassVar[frozenset[str]] = frozenset()
    #: True while a message from the browser is applied (its changes are one user action).
    _in_browser_batch = False

    error = traitlets.Unicode("").tag(sync=True)
    """The last problem, ``"ClassName: message"``; empty when all is well. Shown in the widget."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._frontend_writable = frozenset().union(
            *(vars(base).get("_writable", ()) for base in cls.__mro__)
        )

    def __init__(self, **kwargs: Any) -> None:
        self._init_lanes()
        super().__init__(**kwargs)

    def _init_lanes(self) -> None:
        # Idempotent: panels create their lanes before the traits are set up.
        if "_lanes" not in self.__dict__:
            self._lock = threading.RLock()  # guards publishing: one writer of traits at a time
            self._lanes: list[Lane] = []

    def _lane(self, name: str, on_fail: Any = None) -> Lane:
        """A new lane of background work, waited for by :meth:`wait`, closed by :meth:`close`."""
        self._init_lanes()
        lane = Lane(self, name, on_fail)
        self._lanes.append(lane)
        return lane

    @classmethod
    def _check_options(cls, given: Mapping[str, Any]) -> None:
        unknown = [name for name in given if name not in cls._options]
        if unknown:
            names = ", ".join(repr(n) for n in unknown)
            plural = "s" if len(unknown) > 1 else ""
            valid = ", ".join(sorted(cls._options)) or "none"
            raise TypeError(
                f"{cls.__name__}() got unexpected keyword argument{plural} {names}; "
                f"valid options: {valid}"
            )

    # -- errors ------------------------------------------------------------------------------
    def _report(self, exc: BaseException | str) -> None:
        """Show a problem in the ``error`` trait, prefixed with the class name."""
        if isinstance(exc, BaseException):
            expected = isinstance(exc, (ValueError, TypeError, IndexError, KeyError, ImportError))
            text = str(exc) if expected else f"{type(exc).__name__}: {exc}"
            if not expected:  # a bug somewhere: keep the traceback for whoever debugs it
                log.warning("%s failed", type(self).__name__, exc_info=exc)
        else:
            text = exc
        self.error = f"{type(self).__name__}: {text}"

    def _new_action(self) -> None:
        """A new action from Python: the old problem is gone (the browser's messages clear it
        in :meth:`set_state`, for the whole message)."""
        if self.error and not self._in_browser_batch:
            self.error = ""

    # -- work in the background --------------------------------------------------------------
    def wait(self, timeout: float | None = WAIT_TIMEOUT) -> None:
        """Block until the background work has published the latest requests.

        Raises
        ------
        TimeoutError
            When the work takes longer than ``timeout`` seconds.
        """
        # A lane's job may start work on another lane (never the other way round), so waiting
        # for each in the order they were made is enough.
        for lane in self._lanes:
            if not lane.wait(timeout):
                raise TimeoutError(f"{type(self).__name__}: still busy after {timeout} s")

    def close(self) -> None:
        """Stop the background threads and close the widget's connection to the browser."""
        for lane in getattr(self, "_lanes", ()):
            lane.close()
        super().close()

    # -- the picture outside the browser -------------------------------------------------------
    def _picture(self) -> Rendered | np.ndarray | None:
        """The current picture at its natural size (a :class:`Rendered` or uint8 pixels), or
        None; panels that draw pictures override it."""
        return None

    def save_png(self, path: str | Path, *, scale: int | None = None) -> Path:
        """Write the current picture as a PNG file, enlarged by a whole factor with sharp
        pixels so that it is readable (``scale=1`` keeps the natural size).

        Waits for pending work first.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        self.wait()
        picture = self._picture()
        if picture is None:
            reason = f": {self.error}" if self.error else ""
            raise RuntimeError(f"{type(self).__name__} has no picture to save{reason}")
        target = Path(path)
        target.write_bytes(readable_png(picture, scale=scale))
        return target

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict, dict] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle
        picture = self._picture()
        if picture is not None:
            # A notebook saved or exported without widget state still shows the picture,
            # enlarged with sharp pixels as the live widget shows it.
            png = readable_png(picture)
            data = {**data, "image/png": base64.b64encode(png).decode("ascii")}
        return data, metadata

    # -- input from the browser ----------------------------------------------------------------
    def set_state(self, sync_data: dict[str, Any]) -> None:
        """Apply state sent by the browser; invalid input lands in ``error``, never raises."""
        accepted = {k: v for k, v in sync_data.items() if k in self._frontend_writable}
        ignored = sorted(set(sync_data) - set(accepted))
        if ignored:
            log.debug("%s ignores front-end writes to %s", type(self).__name__, ignored)
        # A message from the browser is a new user action: the old problem is gone, and
        # whatever this message gets wrong is reported for it.
        if self.error:
            self.error = ""
        self._in_browser_batch = True
        try:
            super().set_state(accepted)
        except Exception as exc:
            self._report(exc)
        finally:
            self._in_browser_batch = False
        # The browser already shows what it sent; where Python refused or corrected a value,
        # send the real one back or the two sides disagree from now on.
        stale = [k for k in sync_data if k in self.keys and not self._json_equal(k, sync_data[k])]
        if stale:
            self.send_state(stale)

    def _json_equal(self, name: str, sent: Any) -> bool:
        value = getattr(self, name)
        if isinstance(value, (bytes, bytearray, memoryview)):
            # Binary input (an upload) is consumed and cleared by its observer, which sends
            # the cleared value itself.
            return True
        to_json = self.trait_metadata(name, "to_json", self._trait_to_json)
        try:
            return json.loads(json.dumps(to_json(value, self))) == sent
        except (TypeError, ValueError):
            return False
