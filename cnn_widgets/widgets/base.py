"""The shared AnyWidget base: front-end files, strict keyword arguments, guarded front-end input.

Every widget of the package renders with the one ES module in ``cnn_widgets/static``; what it
shows is decided by the synced traits alone, so the same module serves all widget classes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import anywidget
import traitlets

__all__ = ["STATIC", "WidgetBase"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"
"""Folder of ``widget.js`` and ``widget.css``."""


class WidgetBase(anywidget.AnyWidget):
    """Base class of the cnn_widgets widgets.

    Subclasses list the keyword arguments they accept in ``_options`` (anything else raises
    :class:`TypeError`, so a typo fails loudly) and the traits the browser may write in
    ``_frontend_writable`` (anything else the browser sends is ignored).
    """

    _esm = STATIC / "widget.js"
    _css = STATIC / "widget.css"

    _options: ClassVar[tuple[str, ...]] = ()
    _frontend_writable: ClassVar[frozenset[str]] = frozenset()
    #: True while a message from the browser is applied (its changes are one user action).
    _in_browser_batch = False

    error = traitlets.Unicode("").tag(sync=True)
    """The last problem, ``"ClassName: message"``; empty when all is well. Shown in the widget."""

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
