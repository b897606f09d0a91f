"""``atlas()``: plan the units, skip those in the store, run the rest, write what comes back."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import Adapter, adapt
from ..featureviz import feature_viz
from . import executors
from .plan import Unit, fingerprint, model_info, normalize_options, plan_units, settings_key
from .store import Store
from .work import ModelSource, UnitOutcome, remember

__all__ = ["AtlasReport", "atlas"]

Callback = Callable[["AtlasReport"], "bool | None"]


@dataclass(frozen=True)
class AtlasReport:
    """What an atlas run did.

    Attributes
    ----------
    out:
        The model's directory in the store, ``out/<fingerprint>``.
    fingerprint:
        The model's fingerprint.
    settings_key:
        The hash of the ``feature_viz`` settings every record of this run carries.
    units:
        Units of this run (of this shard, for ``shard=``).
    done:
        Units rendered and written by this run.
    skipped:
        Units already in the store with the same settings (not rendered again).
    failed:
        ``(unit, error)`` for units whose computation raised; each has an ``.error.json``.
    stopped:
        True when a callback returned False before every unit was through.
    seconds:
        Wall time of the run.
    """

    out: Path
    fingerprint: str
    settings_key: str
    units: tuple[Unit, ...]
    done: tuple[Unit, ...] = ()
    skipped: tuple[Unit, ...] = ()
    failed: tuple[tuple[Unit, str], ...] = ()
    stopped: bool = False
    seconds: float = 0.0

    @property
    def missing(self) -> tuple[Unit, ...]:
        """Units neither in the store nor failed (a stopped run's rest)."""
        through = {*self.done, *self.skipped, *(u for u, _ in self.failed)}
        return tuple(u for u in self.units if u not in through)

    def __repr__(self) -> str:
        return (
            f"AtlasReport({str(self.out)!r}: {len(self.done)} done, {len(self.skipped)} "
            f"skipped, {len(self.failed)} failed, {len(self.missing)} missing of "
            f"{len(self.units)} units in {self.seconds:.1f} s)"
        )


@dataclass
class _Run:
    """The driver's state: the store and the layer bookkeeping for manifests. ``pending``
    counts each layer's units still to come in this run: the manifest is attempted when it
    reaches zero (reading the layer's records once), not after every unit (which read them
    all again each time: quadratic in a layer's channels, on the driver that feeds every
    worker)."""

    store: Store
    key: str
    settings: dict[str, Any]
    layer_channels: dict[str, list[int]]
    report: AtlasReport
    pending: dict[str, int] = field(default_factory=dict)
    done: list[Unit] = field(default_factory=list)
    failed: list[tuple[Unit, str]] = field(default_factory=list)

    def write(self, outcome: UnitOutcome) -> None:
        self._write(outcome)
        layer = outcome.unit.layer
        self.pending[layer] -= 1
        if self.pending[layer] == 0 and outcome.error is None:
            self.store.write_manifest(layer, self.layer_channels[layer], self.key)

    def _write(self, outcome: UnitOutcome) -> None:
        unit = outcome.unit
        if outcome.error is not None:
            self.store.write_error(unit.layer, unit.channels, {
                "layer": unit.layer, "channels": list(unit.channels),
                "settings_key": self.key, "error": outcome.error,
            })
            self.failed.append((unit, outcome.error))
            return
        for i, channel in enumerate(unit.channels):
            self.store.write_channel(unit.layer, channel, outcome.pngs[i], {
                "layer": unit.layer,
                "channel": channel,
                "fingerprint": self.store.fingerprint,
                "settings_key": self.key,
                "settings": self.settings,
                "seed": self.settings["seed"],
                "activation": outcome.activations[i],
                "curve": {"steps": list(outcome.curve_steps), "objective": list(outcome.curves[i])},
            })
        self.store.clear_error(unit.layer, unit.channels)
        self.done.append(unit)

    def snapshot(self, start: float, stopped: bool = False) -> AtlasReport:
        return dataclasses.replace(
            self.report, done=tuple(self.done), failed=tuple(self.failed), stopped=stopped,
            seconds=time.perf_counter() - start,
        )


def atlas(
    model: Any,
    out: str | os.PathLike[str],
    *,
    layers: Sequence[str] | str | None = None,
    channels_per_unit: int = 32,
    max_channels: int | None = None,
    executor: Executor | str | None = None,
    workers: int | None = None,
    address: str | None = None,
    shard: tuple[int, int] | None = None,
    add: bool = False,
    framework: str = "auto",
    callback: Callback | None = None,
    progress: bool = True,
    **feature_viz_options: Any,
) -> AtlasReport:
    """Feature visualizations of every channel of every layer, into a resumable store.

    Parameters
    ----------
    model:
        A bundled model's name (``"lenet"`` or ``"demo:lenet"``), a model file the CLI reads
        (``.keras``, ``.pt2``, TorchScript, ``.onnx``, Caffe ``.prototxt``), or a model object
        / :class:`~cnn_widgets.Adapter`. Workers of an ``executor`` load the model from a name
        or file, never from a pickle: a Keras model object is saved to a ``.keras`` file in
        ``out`` for them; a torch model object runs with ``executor=None`` only.
    out:
        The store directory (layout: ``docs/atlas.md``); the model's atlas goes in
        ``out/<fingerprint>/``.
    layers:
        Layer names; default every layer with a spatial output.
    channels_per_unit:
        Channels per ``feature_viz`` call (one unit of work).
    max_channels:
        Only the first this many channels of each layer (a quick look at a big model).
    executor:
        None: here, one unit after the other. A ``concurrent.futures.Executor`` (a
        ``ProcessPoolExecutor`` needs ``mp_context=multiprocessing.get_context("spawn")``:
        ``fork`` after torch ran can hang). ``"ray"``: Ray actors, ``workers`` of them, on a
        local Ray or the cluster at ``address``.
    shard:
        ``(i, n)``: only units ``i, i+n, i+2n ...`` of the plan, for job arrays; the shard
        that completes a layer writes its manifest, so all shards together equal one run.
    add:
        Allow an ``out`` that already holds another model's atlas.
    framework:
        For a bundled model's name: ``"torch"``, ``"keras"`` or ``"auto"``.
    callback:
        ``callback(report)`` after every unit with the report so far; returning False stops
        the run (the report says ``stopped``). An exception from it stops the run and
        propagates, as does ``KeyboardInterrupt``; finished units stay in the store.
    progress:
        Show a ``tqdm`` progress bar.
    **feature_viz_options:
        ``steps``, ``size``, ``recipe``, ``seed``, ``batch_size``, ``memory_budget`` and the
        recipe's settings, as for :func:`cnn_widgets.feature_viz`.

    Returns
    -------
    AtlasReport

    Raises
    ------
    ValueError
        ``out`` holds another model's atlas (nothing is written), an unknown layer, a bad
        option or shard, a torch model object with an executor.
    ImportError
        ``executor="ray"`` without Ray installed.
    """
    start = time.perf_counter()
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    settings = normalize_options(feature_viz_options)
    key = settings_key(settings)
    kind = _executor_kind(executor)
    adapter, spec = _resolve(model, framework)
    units = plan_units(adapter, layers, channels_per_unit, max_channels)
    layer_channels: dict[str, list[int]] = {}
    for unit in units:
        layer_channels.setdefault(unit.layer, []).extend(unit.channels)
    if shard is not None:
        units = units[_shard(shard)]
    store = Store(out, fingerprint(adapter))
    store.check_out(add)
    worker_model, cleanup = _worker_model(adapter, spec, store, kind, framework)
    try:
        return _drive(store, adapter, worker_model, units, layer_channels, settings, key,
                      kind, executor, workers, address, feature_viz_options, callback, progress,
                      start)
    finally:
        cleanup()


def _drive(
    store: Store, adapter: Adapter, worker_model: Adapter | ModelSource, units: list[Unit],
    layer_channels: dict[str, list[int]], settings: dict[str, Any], key: str, kind: str,
    executor: Any, workers: int | None, address: str | None, options: dict[str, Any],
    callback: Callback | None, progress: bool, start: float,
) -> AtlasReport:
    todo = [u for u in units if not store.has_channels(u.layer, u.channels, key)]
    if todo:  # a bad option fails here, once, before anything is written
        feature_viz(adapter, todo[0].layer, todo[0].channels[0], **{**options, "steps": 1})
    store.write_model(model_info(adapter))
    store.sweep_stale()
    for layer, channels in layer_channels.items():  # complete before (a run killed just then)
        store.write_manifest(layer, channels, key)
    waiting = set(todo)
    report = AtlasReport(
        out=store.root, fingerprint=store.fingerprint, settings_key=key, units=tuple(units),
        skipped=tuple(u for u in units if u not in waiting),
    )
    pending: dict[str, int] = {}
    for unit in todo:
        pending[unit.layer] = pending.get(unit.layer, 0) + 1
    run = _Run(store, key, settings, layer_channels, report, pending)
    outcomes = _outcomes(kind, executor, worker_model, todo, options, workers, address)
    bar = _bar(len(todo)) if progress and todo else None
    try:
        for outcome in outcomes:
            run.write(outcome)
            if bar is not None:
                bar.update(1)
            if callback is not None and callback(run.snapshot(start)) is False:
                return run.snapshot(start, stopped=len(run.done) + len(run.failed) < len(todo))
    finally:
        outcomes.close()
        if bar is not None:
            bar.close()
    return run.snapshot(start)


def _executor_kind(executor: Any) -> str:
    if executor is None:
        return "none"
    if isinstance(executor, Executor):
        return "futures"
    if executor == "ray":
        return "ray"
    raise ValueError(f"executor must be one of {', '.join(executors.EXECUTORS)}; got {executor!r}")


def _resolve(model: Any, framework: str) -> tuple[Adapter, str | None]:
    """The adapter, and the name or file workers can load it from (None for an object)."""
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if isinstance(model, str):
        spec = model
        if not spec.startswith("demo:") and not Path(spec).exists():
            from .. import zoo

            if spec in zoo.available():
                spec = f"demo:{spec}"
        from ..__main__ import load_model

        loaded = load_model(spec, framework)
        adapter = loaded if isinstance(loaded, Adapter) else adapt(loaded)
        return adapter, spec
    return (model if isinstance(model, Adapter) else adapt(model)), None


def _worker_model(
    adapter: Adapter, spec: str | None, store: Store, kind: str, framework: str
) -> tuple[Adapter | ModelSource, Callable[[], None]]:
    """What workers load (a :class:`ModelSource`), or the adapter itself in this process.

    A name or file travels as it is (the worker's loader reproduces the input spec, and the
    fingerprint, which covers the spec, proves it); a model object travels as a file plus
    its input spec as plain data."""
    if kind == "none":
        return adapter, lambda: None
    if spec is not None:
        source = ModelSource(spec, store.fingerprint, framework)
        remember(source, adapter)  # a worker in this very process (a thread pool) reuses it
        return source, lambda: None
    if adapter.framework != "keras":
        raise ValueError(
            "a torch model object cannot travel to worker processes safely: a TorchScript or "
            "torch.export reload loses the module types the layers are found by, and a "
            "pickle can carry code. Pass a bundled model's name (e.g. 'efficientnet_lite0'), "
            "or use executor=None"
        )
    pre = adapter.spec.preprocess
    normalization = None
    if pre is not None:
        from ..backends.base import Normalization

        if not isinstance(pre, Normalization):
            raise ValueError(
                "workers cannot receive a preprocess function (it would travel as a pickle of "
                "code): give the model a Normalization, or use executor=None"
            )
        normalization = (tuple(pre.mean), tuple(pre.std), float(pre.scale))
    path, cleanup = _model_file(adapter, store)
    source = ModelSource(path, store.fingerprint, framework, tuple(adapter.spec.shape),
                         normalization)
    remember(source, adapter)
    return source, cleanup


def _model_file(adapter: Adapter, store: Store) -> tuple[str, Callable[[], None]]:
    store.root.mkdir(parents=True, exist_ok=True)
    path = store.root / f".model-{store.fingerprint}.keras"  # hidden: not part of the atlas
    adapter.model.save(path)
    return str(path), lambda: path.unlink(missing_ok=True)


def _outcomes(
    kind: str, executor: Any, model: Adapter | ModelSource, todo: list[Unit],
    options: dict[str, Any], workers: int | None, address: str | None,
) -> Iterator[UnitOutcome]:
    if kind == "none":
        return executors.in_process_outcomes(model, todo, options)
    assert isinstance(model, ModelSource)
    if kind == "futures":
        return executors.futures_outcomes(executor, model, todo, options)
    return executors.ray_outcomes(model, todo, options, workers, address)


def _shard(shard: Any) -> slice:
    valid = (
        isinstance(shard, tuple) and len(shard) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
        and shard[1] >= 1 and 0 <= shard[0] < shard[1]
    )
    if not valid:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
    return slice(shard[0], None, shard[1])


def _bar(total: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar rather than no atlas
        return None
    return tqdm(total=total, desc="atlas", unit="unit", leave=False)
