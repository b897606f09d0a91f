"""Which layer produced a model's output: the discovery pass of every backend asks this."""

from __future__ import annotations

import weakref
from typing import Any

__all__ = ["OutputFinder"]


class OutputFinder:
    """Tells which layer produced a model's output, by object identity.

    A backend reports every layer call of the discovery pass with :meth:`saw` and hands the
    model's returned tensor to :meth:`producer`. Weak references (not ids, which a freed
    tensor's successor may reuse; not strong references, which would keep every activation of
    the pass alive) tie the two together. The *latest* call that returned the output object
    wins, so an in-place layer after the head (``ReLU(inplace=True)`` returns its input
    object) is the producer, as its captured activations are the output's values.
    """

    def __init__(self) -> None:
        self._calls: list[tuple[str, bool, weakref.ref[Any]]] = []

    def saw(self, name: str, first_call: bool, tensor: Any) -> None:
        """Record that layer ``name`` returned ``tensor`` (``first_call``: at its first call)."""
        if tensor is None:
            return
        try:
            ref = weakref.ref(tensor)
        except TypeError:  # a tensor type without weak references: cannot be matched
            return
        self._calls.append((name, first_call, ref))

    def producer(self, output: Any) -> str | None:
        """The layer whose output is ``output``, or None when no layer's is, or when the
        latest layer that returned it did so at a later call (a shared module): its shown
        activations, those of its first call, would not be the model's output."""
        if output is None:
            return None
        for name, first_call, ref in reversed(self._calls):
            if ref() is output:
                return name if first_call else None
        return None

