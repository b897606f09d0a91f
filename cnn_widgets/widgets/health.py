"""The health panel: "Check health" runs :func:`cnn_widgets.health_report` over every conv
layer in the background; the current layer's flagged channels are marked on the grid and
listed, and follow the layer (the report covers every layer: a layer change needs no new
check)."""

from __future__ import annotations

import importlib
import logging
from typing import Any

import numpy as np
import traitlets

from ..analysis import health_report
from ..analysis.health import HealthReport
from .frames import jsonable
from .inputs import ImageSetPanel
from .lane import Ticket

__all__ = [
    "KIND_LABELS",
    "HealthPanel",
    "default_health_images",
    "health_entries",
    "health_summary",
]

log = logging.getLogger(__name__)

KIND_LABELS = {
    "dead_filter": "dead filter",
    "dead_channel": "dead channel",
    "constant_channel": "constant channel",
    "nonfinite_weights": "NaN/Inf weights",
    "nonfinite_activations": "NaN/Inf values",
}
"""Words for :data:`cnn_widgets.analysis.health.KINDS` in the widget's list."""


class HealthPanel(ImageSetPanel):
    """Checks every conv layer for dead, constant and non-finite channels."""

    _writable = frozenset({"health_run"})

    health_run = traitlets.Int(0).tag(sync=True)
    """The browser's "Check health" button: each increment runs :meth:`check_health`."""
    health_running = traitlets.Bool(False).tag(sync=True)
    """True while a health check runs in the background (read-only)."""
    health_flags = traitlets.Dict().tag(sync=True)
    """The current layer's flagged channels from the last health check, ``{"4": [kind, ...]}``
    (keys are channel numbers as text); the browser marks their tiles (read-only)."""
    health_findings = traitlets.List(traitlets.Dict()).tag(sync=True)
    """The current layer's findings: ``{channel, kind, label, message, where}`` (read-only)."""
    health_summary = traitlets.Unicode("").tag(sync=True)
    """One line about the last health check, for the current layer (read-only)."""

    def _prepare(self, adapter: Any, image: Any, options: dict, state: dict) -> None:
        super()._prepare(adapter, image, options, state)
        self._health: tuple[HealthReport, str] | None = None
        self.health_lane = self._lane("health", on_fail=self._health_failed)
        """The lane that runs health checks (its counters are public)."""

    def check_health(self) -> None:
        """Check every conv layer for dead, constant and non-finite channels, in the background.

        Runs :func:`cnn_widgets.health_report` on :attr:`images` when set, else on the current
        image and the bundled sample images with the model's channel count. The current
        layer's flagged channels then show in ``health_flags`` (marked on the grid) and
        ``health_findings`` (listed), and follow the layer. :meth:`wait` blocks until done.
        """
        self._new_action()
        if self._images is not None:
            images: Any = self._images
            source = "the images set in .images"
        else:
            current, _ = self._current_input()
            defaults = default_health_images(self._adapter, current)
            images = defaults or None
            source = "the current image and matching samples" if defaults else "no images"
        ticket = self.health_lane.request()
        with self._lock, self.hold_sync():
            self.health_running = True
            self.health_summary = "checking the health of every conv channel…"
        self.health_lane.run(ticket, lambda t: self._check(images, source, t))

    def _check(self, images: Any, source: str, ticket: Ticket) -> None:
        """Runs on the health lane."""
        ticket.check()
        report = health_report(self._adapter, images)  # each pass holds the model lock

        def apply() -> None:
            self._health = (report, source)
            self.health_running = False
            self._show_health()

        ticket.publish(apply)  # dropped when the images changed meanwhile

    def _health_failed(self) -> None:
        self.health_running = False
        self.health_summary = "the health check failed (see the error)"

    @traitlets.observe("health_run")
    def _on_health_button(self, change: dict[str, Any]) -> None:
        if not self._quiet and change["old"] != change["new"]:
            self.check_health()

    def _images_changed(self) -> None:
        super()._images_changed()
        # A report on other images would be mistaken for one on these.
        self.health_lane.retire()
        with self._lock, self.hold_sync():
            self._health = None
            self.health_running = False
            self.health_flags, self.health_findings, self.health_summary = {}, [], ""

    def _update(self, *, detail_only: bool, inline: bool) -> None:
        super()._update(detail_only=detail_only, inline=inline)
        self._show_health()

    def _show_health(self) -> None:
        """Publish the last report's marks, list and summary for the current layer."""
        with self._lock:
            if self._health is None:
                return
            report, source = self._health
            flags, rows = health_entries(report, self.layer)
            with self.hold_sync():
                self.health_flags, self.health_findings = flags, rows
                if not self.health_running:  # a new check says "checking" until it is done
                    self.health_summary = health_summary(report, self.layer, source)


def default_health_images(adapter: Any, current: np.ndarray | None) -> list[np.ndarray]:
    """The images a health check uses when the user gave none: the current input image and
    every bundled sample whose channel count is the model's (the digits for a gray model, the
    photos for an RGB one).

    With no fixed input size, only images of the first one's size are kept (the statistics
    need maps of one size).
    """
    chosen: list[np.ndarray] = []
    if current is not None:
        chosen.append(np.moveaxis(current, 0, -1))  # HWC floats in [0, 1]: read as they are
    zoo = importlib.import_module("cnn_widgets.zoo")
    for name in zoo.list_samples():
        try:
            picture = zoo.sample_image(name)
        except ImportError as exc:  # the photos need scikit-image; the digits do not
            log.info("sample %s left out of the health check: %s", name, exc)
            continue
        channels = 1 if picture.ndim == 2 else picture.shape[-1]
        if channels == adapter.spec.channels:
            chosen.append(picture)
    if adapter.spec.spatial is None and chosen:
        size = chosen[0].shape[:2]
        chosen = [picture for picture in chosen if picture.shape[:2] == size]
    return chosen


def health_entries(report: HealthReport, layer: str) -> tuple[dict[str, list[str]], list[dict]]:
    """The marks and the list of one layer: ``({"4": [kind, ...]}, [{channel, kind, label,
    message, where}, ...])``, JSON-ready (dict keys are strings on the wire)."""
    flags = {str(channel): kinds for channel, kinds in report.flagged(layer).items()}
    followers = report.followers
    rows = [
        {
            "channel": f.channel,
            "kind": f.kind,
            "label": KIND_LABELS.get(f.kind, f.kind),
            "message": f.message,
            "where": f.where,
        }
        for f in report.findings
        if f.layer == layer or layer in followers.get(f.layer, ())
    ]
    return flags, jsonable(rows)


def health_summary(report: HealthReport, layer: str, source: str) -> str:
    """One line about the report, from the point of view of ``layer``."""
    checked = report.layers
    followers = {name for names in report.followers.values() for name in names}
    seen = f"{report.images} image(s), {source}" if report.images else "weights only"
    total = f"{len(report)} finding(s) in {len(checked)} conv layer(s) ({seen})"
    if layer not in checked and layer not in followers:
        return f"{layer!r} is not a conv layer (or a layer right after one): {total}"
    flagged = len(report.flagged(layer))
    if not flagged:
        return f"no problems in {layer!r} · {total}"
    plural = "s" if flagged != 1 else ""
    return f"{flagged} flagged channel{plural} in {layer!r} · {total}"
