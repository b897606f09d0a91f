"""A health check of every conv layer, built on the channel statistics of
:mod:`cnn_widgets.analysis.stats` (``ChannelStats`` and ``channel_stats`` are importable from
here too).

:func:`health_report` looks for what makes a conv channel useless or broken:

``dead_filter``
    the filter's weights are (near) zero: its output is just its bias;
``dead_channel``
    the channel is exactly zero on every image and position, at the conv's output or after
    the layers that follow it one-to-one (batch norm, then a ReLU that clips it away);
``constant_channel``
    the channel has one value everywhere, on every image, but not zero;
``nonfinite_weights`` / ``nonfinite_activations``
    NaN or Inf in the filter (or its bias) / in the channel's values.

Why look past the conv output: a ReLU kills a channel whose pre-activation is negative on
every input (a large negative bias, a collapsed batch norm), and that is invisible in the conv
output, which is negative rather than zero. So each conv is followed, in forward order, along
the layers that map channel ``c`` to channel ``c`` alone (batch norm, activations, dropout:
:data:`ONE_TO_ONE`), take *exactly* its output (checked by comparing, bit for bit, what they
receive with what the previous link emits, on one image) and keep its shape, up to
:data:`MAX_FOLLOWERS` of them. A channel that is zero everywhere at any of them carries
nothing further. Anything else (a residual sum, a pooling, a custom layer) ends the chain.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import Adapter, adapt
from ..backends.base import LayerInfo
from .imagesets import ImageSet, ImagesLike
from .stats import ChannelStats, channel_stats, stream_stats

__all__ = ["KINDS", "ChannelStats", "Finding", "HealthReport", "channel_stats", "health_report"]

KINDS = (
    "dead_filter",
    "dead_channel",
    "constant_channel",
    "nonfinite_weights",
    "nonfinite_activations",
)
"""Every ``Finding.kind``, most serious last."""

MAX_FOLLOWERS = 4
"""How many one-to-one layers after a conv (batch norm, activation, dropout) are checked."""

ONE_TO_ONE = frozenset(
    {
        # normalisation with fixed per-channel statistics
        "batchnorm2d", "syncbatchnorm", "batchnormalization", "frozenbatchnorm2d",
        # activations (Keras ``Activation`` wraps any of them)
        "activation", "relu", "relu6", "leakyrelu", "prelu", "elu", "selu", "celu", "gelu",
        "silu", "swish", "mish", "hardswish", "hardsigmoid", "sigmoid", "tanh", "hardtanh",
        "softplus", "threshold",
        # identities at inference
        "dropout", "dropout2d", "spatialdropout2d", "alphadropout", "gaussiandropout",
        "gaussiannoise", "identity",
    }
)  # fmt: skip
"""Layer types (class names, lower case) that map channel ``c`` to channel ``c`` alone, so a
conv's channel can be followed through them. Merges (``Add``), channel mixers and unknown
custom layers end the chain."""

_Add = Callable[..., None]  # records a finding: (layer, channel, kind, message[, where])


@dataclass(frozen=True)
class Finding:
    """One problem of one channel (or, with ``channel=None``, of a whole layer).

    Attributes
    ----------
    layer:
        The conv layer the channel belongs to.
    channel:
        The output channel (filter) index.
    kind:
        One of :data:`KINDS`.
    message:
        A sentence for people.
    where:
        The layer whose output shows the problem: ``layer`` itself, or a follower such as
        the ReLU that zeroes a dead channel.
    """

    layer: str
    channel: int | None
    kind: str
    message: str
    where: str = ""


@dataclass(frozen=True, eq=False)
class HealthReport:
    """What :func:`health_report` found, per conv layer and channel.

    Attributes
    ----------
    findings:
        Every :class:`Finding`, in layer order, then channel order.
    layers:
        The conv layers checked.
    images:
        How many images the activation checks saw (0: weights only).
    followers:
        For each conv, the one-to-one layers after it whose outputs were checked too.
    not_run:
        Conv layers that did not run in the model's forward pass: their weights were checked,
        their activations could not be (they have none).
    """

    findings: list[Finding]
    layers: tuple[str, ...]
    images: int
    followers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    not_run: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.findings)

    def by_layer(self) -> dict[str, list[Finding]]:
        """Findings grouped by conv layer, in layer order (layers without findings left out)."""
        grouped: dict[str, list[Finding]] = {}
        for finding in self.findings:
            grouped.setdefault(finding.layer, []).append(finding)
        return grouped

    def flagged(self, layer: str | LayerInfo) -> dict[int, list[str]]:
        """``{channel: [kind, ...]}`` for one layer, for marking its tiles.

        Accepts a conv layer or one of its followers (a ReLU shows the conv's channels one to
        one, so its tiles get the same marks); any other name gives ``{}``.
        """
        name = layer.name if isinstance(layer, LayerInfo) else layer
        marks: dict[int, list[str]] = {}
        for finding in self.findings:
            if finding.channel is None:
                continue
            if name == finding.layer or name in self.followers.get(finding.layer, ()):
                kinds = marks.setdefault(finding.channel, [])
                if finding.kind not in kinds:
                    kinds.append(finding.kind)
        return marks

    def counts(self) -> dict[str, int]:
        """How many findings of each kind (every kind listed, zeros included)."""
        return {kind: sum(f.kind == kind for f in self.findings) for kind in KINDS}

    def _summary(self) -> str:
        seen = f"over {self.images} image(s)" if self.images else "(weights only, no images)"
        skipped = (
            f"; {len(self.not_run)} conv layer(s) did not run in the forward pass (weights "
            "only): " + ", ".join(repr(n) for n in self.not_run)
            if self.not_run and self.images
            else ""
        )
        if not self.findings:
            return f"HealthReport: no problems in {len(self.layers)} conv layer(s) {seen}{skipped}"
        kinds = ", ".join(f"{n} {k}" for k, n in self.counts().items() if n)
        return (
            f"HealthReport: {len(self.findings)} finding(s) in {len(self.by_layer())} of "
            f"{len(self.layers)} conv layer(s) {seen}: {kinds}{skipped}"
        )

    def __repr__(self) -> str:
        lines = [self._summary()]
        shown = self.findings[:50]
        for f in shown:
            channel = "-" if f.channel is None else str(f.channel)
            lines.append(f"  {f.layer}  [{channel}]  {f.kind}: {f.message}")
        if len(self.findings) > len(shown):
            lines.append(f"  ... {len(self.findings) - len(shown)} more (see .findings)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(
            "<tr>"
            f"<td>{esc(f.layer)}</td>"
            f"<td>{'' if f.channel is None else f.channel}</td>"
            f"<td>{esc(f.kind)}</td>"
            f"<td>{esc(f.where)}</td>"
            f"<td>{esc(f.message)}</td>"
            "</tr>"
            for f in self.findings
        )
        table = (
            "<table><thead><tr><th>layer</th><th>channel</th><th>kind</th><th>seen at</th>"
            f"<th>message</th></tr></thead><tbody>{rows}</tbody></table>"
            if self.findings
            else ""
        )
        return f'<div class="cnnw-health"><p>{esc(self._summary())}</p>{table}</div>'


def health_report(
    model: Any,
    images: ImagesLike | None = None,
    *,
    dead_weight_tol: float = 1e-8,
    batch_size: int = 16,
    progress: bool = False,
) -> HealthReport:
    """Check every 2-D conv layer for dead, constant and non-finite channels.

    Parameters
    ----------
    model:
        A torch or Keras model, or an adapted one. Left untouched.
    images:
        The images to judge activations on (folder, array or list, as for
        :func:`channel_stats`); None checks the weights only. A channel is dead or constant
        *on these images*: use a few dozen varied ones.
    dead_weight_tol:
        A filter whose weights' L2 norm is at most this is a ``dead_filter``.
    batch_size:
        Images per forward pass (fewer when the activations of all conv layers and their
        followers for one batch would pass 256 MB).
    progress:
        Show a ``tqdm`` progress bar.

    Returns
    -------
    HealthReport
        ``.findings``, ``.by_layer()``, ``.flagged(layer)``; prints as a list, shows as a
        table in a notebook.

    Notes
    -----
    Where each kind is looked for is explained in :mod:`cnn_widgets.analysis.health`: dead
    and constant channels at the conv output *and* at the layers right after it that take
    its output one to one (so a ReLU that clips a channel to zero on every image is caught).
    A dead channel is not also reported as constant.
    """
    adapter = adapt(model)
    convs = adapter.conv_layers()
    findings: dict[tuple[str, int], list[Finding]] = {}

    def add(layer: str, channel: int, kind: str, message: str, where: str = "") -> None:
        findings.setdefault((layer, channel), []).append(
            Finding(layer, channel, kind, message, where or layer)
        )

    for info in convs:
        _check_weights(adapter, info, float(dead_weight_tol), add)

    followers: dict[str, tuple[str, ...]] = {}
    seen = 0
    # A conv that did not run in the forward pass (an unused branch) has weights to check
    # but no activations: asking for them would fail the whole report.
    ran = [info for info in convs if info.ran]
    if images is not None and ran:
        image_set = images if isinstance(images, ImageSet) else ImageSet(images)
        followers = _followers(adapter, ran)
        infos = [adapter.layer(n) for conv in ran for n in (conv.name, *followers[conv.name])]
        stats = stream_stats(adapter, image_set, infos, batch_size, progress)
        seen = next(iter(stats.values())).images
        for conv in ran:
            chain = [stats[n] for n in (conv.name, *followers[conv.name])]
            _check_activations(conv.name, chain, add)

    order = {info.name: i for i, info in enumerate(convs)}
    ranked = sorted(findings.items(), key=lambda item: (order[item[0][0]], item[0][1]))
    return HealthReport(
        findings=[
            f for _, group in ranked for f in sorted(group, key=lambda f: KINDS.index(f.kind))
        ],
        layers=tuple(info.name for info in convs),
        images=seen,
        followers=followers,
        not_run=tuple(info.name for info in convs if not info.ran),
    )


def _check_weights(adapter: Adapter, info: LayerInfo, tol: float, add: _Add) -> None:
    weights = adapter.filters(info.name)
    try:
        bias = adapter.conv_bias(info.name)
    except (NotImplementedError, ValueError):  # a transposed conv, or an older adapter
        bias = None
    flat = weights.reshape(weights.shape[0], -1).astype(np.float64)
    finite = np.isfinite(flat)
    bad = (~finite).sum(axis=1)
    bad_bias = (~np.isfinite(bias)) if bias is not None else np.zeros(len(flat), bool)
    norms = np.sqrt((np.where(finite, flat, 0.0) ** 2).sum(axis=1))
    for channel in range(flat.shape[0]):
        if bad[channel] or bad_bias[channel]:
            nan = int(np.isnan(flat[channel]).sum())
            parts = [f"{nan} NaN and {int(bad[channel]) - nan} Inf of {flat.shape[1]} weights"]
            if bad_bias[channel]:
                parts.append(f"a {float(bias[channel])} bias")  # type: ignore[index]
            add(
                info.name, channel, "nonfinite_weights", f"filter {channel} has " + ", ".join(parts)
            )
        elif norms[channel] <= tol:
            then = (
                "it outputs nothing but zeros"
                if bias is None or bias[channel] == 0
                else f"it outputs nothing but its bias, {float(bias[channel]):.4g}"
            )
            add(
                info.name,
                channel,
                "dead_filter",
                f"filter {channel}'s weights are all (near) zero (L2 norm "
                f"{norms[channel]:.2g}): {then}",
            )


def _check_activations(layer: str, chain: Sequence[ChannelStats], add: _Add) -> None:
    """``chain``: statistics of the conv's output, then of each follower's."""
    conv = chain[0]
    for channel in range(len(conv)):
        nonfinite = [(s, int(s.nan_count[channel]), int(s.inf_count[channel])) for s in chain]
        first_bad = next(((s, n, i) for s, n, i in nonfinite if n or i), None)
        if first_bad is not None:
            stats, nans, infs = first_bad
            total = stats.images * stats.positions
            add(
                layer,
                channel,
                "nonfinite_activations",
                f"channel {channel} has {nans} NaN and {infs} Inf among its {total} values "
                f"over {stats.images} image(s) at {stats.layer!r}",
                stats.layer,
            )
        dead = next((s for s in chain if s.zero_fraction[channel] == 1.0), None)
        if dead is not None:
            if dead is conv:
                why = "the conv's output"
            else:
                why = f"the output of {dead.layer!r} (the conv's own output is not all zero)"
            add(
                layer,
                channel,
                "dead_channel",
                f"channel {channel} is exactly 0 at every position of all {dead.images} "
                f"image(s) in {why}",
                dead.layer,
            )
            continue
        for stats in chain:
            several = stats.images * stats.positions > 1
            finite = stats.nan_count[channel] == 0 and stats.inf_count[channel] == 0
            if several and finite and stats.max[channel] == stats.min[channel]:
                add(
                    layer,
                    channel,
                    "constant_channel",
                    f"channel {channel} is {float(stats.max[channel]):.4g} at every position of "
                    f"all {stats.images} image(s) in the output of {stats.layer!r}",
                    stats.layer,
                )
                break


def _followers(adapter: Adapter, convs: Sequence[LayerInfo]) -> dict[str, tuple[str, ...]]:
    """For each conv, the layers after it that take its output one to one (see module doc).

    Two forward passes of one random image: every candidate's received input is compared,
    bit for bit, with what the previous link of the chain put out.
    """
    infos = adapter.layers()
    candidates: dict[str, list[LayerInfo]] = {}
    for conv in convs:
        chain: list[LayerInfo] = []
        for info in infos[conv.index + 1 : conv.index + 1 + MAX_FOLLOWERS]:
            one_to_one = info.type.lower() in ONE_TO_ONE and info.calls == 1
            if not one_to_one or info.output_shape != conv.output_shape:
                break
            chain.append(info)
        candidates[conv.name] = chain
    wanted = {i.name for chain in candidates.values() for i in chain}
    if not wanted:
        return {conv.name: () for conv in convs}
    size = adapter.spec.spatial or (64, 64)
    probe = np.random.default_rng(0).random((1, adapter.spec.channels, *size), dtype=np.float32)
    outputs = adapter.activations(probe, [*(c.name for c in convs), *wanted])
    received = adapter.layer_inputs(probe, sorted(wanted))
    result: dict[str, tuple[str, ...]] = {}
    for conv in convs:
        previous, chain = conv.name, []
        for info in candidates[conv.name]:
            if not np.array_equal(received[info.name], outputs[previous], equal_nan=True):
                break
            chain.append(info.name)
            previous = info.name
        result[conv.name] = tuple(chain)
    return result
