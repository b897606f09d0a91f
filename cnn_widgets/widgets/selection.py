"""The core every widget is built on: the model, its views, and what is selected in it.

:class:`SelectionPanel` owns the traits every view shares — the view, the layer, the channel
and its page, the layer menu and table, the status line and the ``choices`` the browser
builds its selects from — and settles them (a channel clamped to the layer, the page that
follows the channel, a layer that fits the view). It then tells the other panels through
cooperative hooks, each of which a panel extends with ``super()``:

``_prepare(adapter, image, options, state)``
    before the traits exist: take the panel's options, set its private state, put the
    initial trait values into ``state``;
``_update(detail_only=..., inline=...)``
    the selection or a setting changed: show what the panel knows for it (or start work);
``_on_new_layer()``
    the layer changed, before anything is drawn (a panel resets what depends on it);
``_model_needed()``
    a panel is about to use the model in the background (a running optimization yields).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import traitlets

from .. import choices as _choices  # (``choices`` is also a trait of the widget)
from ..backends import Adapter, LayerInfo, adapt
from ..images import ImageLike
from .base import WidgetBase

__all__ = ["SelectionPanel", "accepts", "is_vector", "layer_entry", "table_row"]

log = logging.getLogger(__name__)


def accepts(view: str, info: LayerInfo) -> bool:
    """Whether ``view`` can show layer ``info`` (:func:`cnn_widgets.choices.view_accepts`)."""
    return _choices.view_accepts(
        view,
        has_filters=bool(info.has_filters),
        ran=info.ran,
        has_output=info.output_shape is not None,
    )


def is_vector(info: LayerInfo) -> bool:
    """A layer whose output is one value per channel: ``(N,)``, or ``(C, 1, 1)`` (a global
    pooling or a conv classifier), drawn as values or class probabilities, not as maps."""
    shape = info.output_shape
    return shape is not None and (len(shape) == 1 or tuple(shape[1:]) == (1, 1))


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "—" if shape is None else "(" + ", ".join(str(s) for s in shape) + ")"


def layer_entry(
    info: LayerInfo, views: tuple[str, ...], fits: Callable[[str, LayerInfo], bool] = accepts
) -> dict[str, Any]:
    """One entry of the ``layers`` trait (the layer menu); ``fits(view, info)`` says which
    views can show the layer."""
    return {
        "index": info.index,
        "name": info.name,
        "type": info.type,
        "shape": None if info.output_shape is None else list(info.output_shape),
        "kind": info.kind,
        "has_filters": bool(info.has_filters),
        "ran": info.ran,
        "vector": is_vector(info),
        "views": [view for view in views if fits(view, info)],
    }


def table_row(
    info: LayerInfo, views: tuple[str, ...], fits: Callable[[str, LayerInfo], bool] = accepts
) -> dict[str, Any]:
    """One row of the layer table: the menu entry plus parameter shapes and counts."""
    return {
        **layer_entry(info, views, fits),
        "shape_text": _shape_text(info.output_shape),
        "params": " ".join(f"{k}{_shape_text(v)}" for k, v in info.param_shapes.items()),
        "num_params": int(info.num_params),
    }


def zoo() -> Any:
    # import_module, not ``from .. import zoo``: the package resolves ``zoo`` lazily.
    return importlib.import_module("cnn_widgets.zoo")


class SelectionPanel(WidgetBase):
    """The shared core of every widget (see the module docstring for the hooks)."""

    _VIEWS: ClassVar[tuple[str, ...]] = ()
    _writable = frozenset({"view", "layer", "channel", "page", "page_size"})

    views = traitlets.List(traitlets.Unicode()).tag(sync=True)
    """The views this widget offers, in the order of its view switch."""
    view = traitlets.Unicode("filters").tag(sync=True)
    """The current view, one of ``views``: ``"filters"``, ``"activations"``, ``"featureviz"``
    or ``"table"``."""
    choices = traitlets.Dict().tag(sync=True)
    """Every choice list the browser builds its selects from, with the numeric limits
    (:func:`cnn_widgets.choices.for_frontend`; read-only)."""
    layers = traitlets.List(traitlets.Dict()).tag(sync=True)
    """Every layer for the layer menu: ``{name, type, shape, kind, has_filters, index, ran,
    vector, views}``; ``ran`` is False for a module that never ran in the forward pass
    (listed, but never a default), ``vector`` True for one value per channel (drawn as values
    or probabilities), ``views`` the views that can show the layer."""
    layer = traitlets.Unicode("").tag(sync=True)
    """Name of the layer shown. A name the model does not have is refused: ``error`` says so
    and ``layer`` keeps its value."""
    channel = traitlets.Int(0).tag(sync=True)
    """The selected channel (filter, feature map, unit); the page follows it. Out of range
    values are refused with an ``error``."""
    channel_count = traitlets.Int(0).tag(sync=True)
    """How many channels (or vector entries) the current layer has (read-only)."""
    page = traitlets.Int(0).tag(sync=True)
    """Page of channels shown when a layer has more than ``page_size``; always the page of
    ``channel`` (setting it moves the channel to the page's first)."""
    page_size = traitlets.Int(64).tag(sync=True)
    """Channels per page."""
    table = traitlets.List(traitlets.Dict()).tag(sync=True)
    """Rows of the layer table view: the ``layers`` entries plus parameter shapes and counts."""
    status = traitlets.Unicode("idle").tag(sync=True)
    """``"idle"``, ``"busy: ..."`` while background work runs, ``"error"`` after a failure,
    ``"stopped"`` after a stopped optimization, or ``"no image: ..."``."""
    busy = traitlets.Bool(False).tag(sync=True)
    """True while the picture is computed in the background."""

    # -- construction ----------------------------------------------------------------------
    def __init__(
        self, model: Any, layer: str | int | LayerInfo | None = None, **options: Any
    ) -> None:
        self._setup(model, None, layer, options)

    def _setup(
        self,
        model: Any,
        image: ImageLike | None,
        layer: str | int | LayerInfo | None,
        options: dict[str, Any],
    ) -> None:
        """Build the widget: every panel prepares, the traits are set, every panel starts,
        and the first picture is drawn before the constructor returns."""
        self._check_options(options)
        adapter = model if isinstance(model, Adapter) else adapt(model)
        infos = adapter.layers()
        self._adapter = adapter
        self._infos = {info.name: info for info in infos}
        self._order = infos
        self._output_name = adapter.output_layer().name
        self._quiet = True  # observers wait until every panel is set up
        self._accepted: dict[str, Any] = {"layer": "", "channel": 0}
        self._init_lanes()
        state: dict[str, Any] = {}
        self._prepare(adapter, image, options, state)
        view = options.pop("view", None) or self._default_view()
        if view not in self._VIEWS:
            raise ValueError(f"view must be one of {', '.join(self._VIEWS)}; got {view!r}")
        name = adapter.layer(layer).name if layer is not None else self._default_layer(view)
        super().__init__(
            views=list(self._VIEWS),
            choices=_choices.for_frontend(self._VIEWS),
            layers=[layer_entry(i, self._VIEWS, self._accepts) for i in infos],
            table=[table_row(i, self._VIEWS, self._accepts) for i in infos],
            view=view,
            layer=name,
            **state,
            **options,
        )
        self._quiet = False
        self._refresh(inline=True)

    def _prepare(
        self,
        adapter: Adapter,
        image: ImageLike | None,
        options: dict[str, Any],
        state: dict[str, Any],
    ) -> None:
        """Hook: take this panel's options, set its private state, fill ``state``."""

    def _accepts(self, view: str, info: LayerInfo) -> bool:
        """Whether ``view`` of this widget can show layer ``info`` (a panel with its own rule
        overrides it)."""
        return accepts(view, info)

    def _default_view(self) -> str:
        return self._VIEWS[0]

    def _default_layer(self, view: str) -> str:
        """The first convolution that ran, else the first layer the view can show, else the
        first that ran. A module that never ran is never a default."""
        ran = [i for i in self._order if i.ran]
        convs = [i for i in ran if i.has_filters]
        shown = [i for i in ran if self._accepts(view, i)]
        return (convs or shown or ran or self._order)[0].name

    # -- public ------------------------------------------------------------------------------
    @property
    def adapter(self) -> Adapter:
        """The adapted model this widget shows."""
        return self._adapter

    def __repr__(self) -> str:
        # Cheap on purpose: no trait serialization, no forward pass.
        model = type(self._adapter.model).__name__ if hasattr(self, "_adapter") else "?"
        return (
            f"<{type(self).__name__} {model} view={self.view!r} layer={self.layer!r} "
            f"channel={self.channel}>"
        )

    # -- validation ----------------------------------------------------------------------------
    # One rule for every setting with a choice list or a range, whichever panel owns it: the
    # lists and ranges of cnn_widgets.choices, under the setting's name (traits a widget does
    # not have are never validated).
    @traitlets.validate(*(n for n in _choices.LISTS if n not in ("view", "zoom", "input_channel")))
    def _validate_choice(self, proposal: Any) -> str:
        return self._choice(proposal, _choices.LISTS[proposal["trait"].name])

    @traitlets.validate("page_size", "top_k", "fv_steps")
    def _validate_range(self, proposal: Any) -> int:
        name = proposal["trait"].name
        low, high = _choices.LIMITS[name]
        value = proposal["value"]
        if not low <= value <= high:
            raise traitlets.TraitError(f"{name} must be in {low}..{high}; got {value}")
        return value

    def _choice(self, proposal: Any, options: tuple[tuple[str, str], ...]) -> str:
        """A validator's check against a choice list: a TraitError naming the valid values."""
        try:
            return _choices.check(options, proposal["value"], proposal["trait"].name)
        except ValueError as exc:
            raise traitlets.TraitError(f"{type(self).__name__}.{exc}") from None

    @traitlets.validate("view")
    def _validate_view(self, proposal: Any) -> str:
        offered = tuple(pair for pair in _choices.VIEWS if pair[0] in (self.views or self._VIEWS))
        return self._choice(proposal, offered)

    @traitlets.validate("page")
    def _validate_page(self, proposal: Any) -> int:
        value = proposal["value"]
        if value < 0:
            raise traitlets.TraitError(f"page must be >= 0; got {value}")
        return value

    @traitlets.validate("layer")
    def _validate_layer(self, proposal: Any) -> str:
        # A wrong name is a user mistake the widget survives: it keeps the current layer and
        # says what went wrong (with suggestions) instead of raising into the comm handler.
        name = proposal["value"]
        if name in self._infos:
            return self._accept("layer", name)
        try:
            self._adapter.layer(name)
        except (ValueError, TypeError) as exc:
            self._report(exc)
        return self._accepted["layer"]

    @traitlets.validate("channel")
    def _validate_channel(self, proposal: Any) -> int:
        value = proposal["value"]
        count = self.channel_count
        if value < 0 or (count and value >= count and not self._quiet):
            self._report(f"channel {value} is out of range: valid 0..{max(count - 1, 0)}")
            return self._accepted["channel"]
        return self._accept("channel", value)

    def _accept(self, name: str, value: Any) -> Any:
        # Validators that refuse a value fall back to the last accepted one: ``self.<name>``
        # already holds the refused value while traitlets holds notifications (browser input).
        self._accepted[name] = value
        return value

    # -- settling and updating ---------------------------------------------------------------
    @contextmanager
    def _quietly(self) -> Iterator[None]:
        """Set dependent traits without triggering another update."""
        previous, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = previous

    @traitlets.observe("view", "layer", "channel", "page", "page_size")
    def _on_selection(self, change: dict[str, Any]) -> None:
        if self._quiet or change["old"] == change["new"]:
            return
        name = change["name"]
        self._new_action()
        try:
            with self._quietly():
                if name == "view":
                    self._fit_layer_to_view()
                elif name == "layer":
                    self._on_new_layer()
                elif name == "page":
                    self.channel = min(self.page * self.page_size, max(self.channel_count - 1, 0))
        except Exception as exc:
            self._report(exc)
            return
        detail_only = name == "channel" and self.channel // self.page_size == self.page
        self._refresh(detail_only=detail_only)

    def _on_new_layer(self) -> None:
        """Hook: the layer changed (called quietly, before anything is drawn)."""

    def _fit_layer_to_view(self) -> None:
        """A view that cannot show the current layer moves to the nearest one it can."""
        info = self._infos[self.layer]
        if self._accepts(self.view, info):
            return
        fitting = [i for i in self._order if self._accepts(self.view, i) and i.ran]
        if not fitting:
            return
        before = [i for i in fitting if i.index <= info.index]
        if self.view == "filters" and before:
            self.layer = before[-1].name
        else:
            self.layer = fitting[0].name

    def _channel_total(self, info: LayerInfo) -> int:
        return max(int(info.output_shape[0]), 1) if info.output_shape else 1

    def _settle(self) -> None:
        """Clamp the channel and the page to the current layer."""
        total = self._channel_total(self._infos[self.layer])
        with self._quietly():
            self.channel_count = total
            if self.channel >= total:
                self.channel = total - 1
            self.page = self.channel // self.page_size

    def _refresh(self, *, detail_only: bool = False, inline: bool = False) -> None:
        """Settle the selection, then let every panel show what it knows for it."""
        try:
            self._settle()
        except Exception as exc:
            self._report(exc)
            return
        self._update(detail_only=detail_only, inline=inline)

    def _update(self, *, detail_only: bool, inline: bool) -> None:
        """Hook: the selection or a setting changed; ``detail_only`` when only the channel
        moved within the page, ``inline`` to draw on the calling thread (construction)."""

    def _model_needed(self) -> None:
        """Hook: a panel is about to use the model in the background."""

    def _current_input(self) -> tuple[Any, str]:
        """The input image ``(C, H, W)`` float32 and its digest, or ``(None, "")``."""
        return None, ""
