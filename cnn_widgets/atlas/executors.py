"""Where units run: in this process, on any ``concurrent.futures.Executor``, or on Ray.

Each executor is a generator of :class:`~cnn_widgets.atlas.work.UnitOutcome` in the order
units finish; the driver (:func:`cnn_widgets.atlas.atlas`) alone writes the store, so workers
need no access to ``out``. Closing a generator (the run stopped, a callback raised, Ctrl-C)
cancels the units not started; what finished is already written.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from ..backends import Adapter
from .plan import Unit
from .work import ModelSource, UnitOutcome, render_unit

__all__ = [
    "EXECUTORS", "RayActors", "futures_outcomes", "in_process_outcomes", "ray_actors",
    "ray_outcomes",
]

EXECUTORS = ("None (in this process)", "a concurrent.futures.Executor", "'ray'")
RAY_INSTALL = 'pip install "cnn_widgets[atlas]"'
RAY_RETRIES = 3
"""How often Ray restarts a lost worker and retries the unit it was rendering."""


def in_process_outcomes(
    model: Adapter | ModelSource, units: Sequence[Unit], options: dict[str, Any]
) -> Iterator[UnitOutcome]:
    for unit in units:
        yield render_unit(model, unit, options)


def futures_outcomes(
    executor: Executor, source: ModelSource, units: Sequence[Unit], options: dict[str, Any]
) -> Iterator[UnitOutcome]:
    """Units on a ``concurrent.futures`` executor, a few more in flight than it has workers
    (so stopping cancels most of the list at once)."""
    window = 2 * max(1, int(getattr(executor, "_max_workers", None) or os.cpu_count() or 1))
    queue = list(reversed(units))
    pending: dict[Future, Unit] = {}
    try:
        while queue or pending:
            while queue and len(pending) < window:
                unit = queue.pop()
                pending[executor.submit(render_unit, source, unit, options)] = unit
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                unit = pending.pop(future)
                yield _future_outcome(future, unit)
    finally:
        for future in pending:
            future.cancel()


def _future_outcome(future: Future, unit: Unit) -> UnitOutcome:
    try:
        return future.result()
    except BrokenProcessPool as exc:  # every later unit would fail the same way: stop, say why
        raise RuntimeError(
            f"the process pool broke while rendering {unit} ({exc}); a worker process died "
            "(out of memory?). Units finished so far are in the store; run again to resume."
        ) from exc
    except Exception as exc:  # the unit could not even be sent or received: record it
        return UnitOutcome(unit=unit, error=f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class RayActors:
    """How many Ray actors render units and what each asks Ray for: ``num_cpus`` CPUs,
    ``num_gpus`` GPUs (a fraction when actors share a GPU) and the torch ``device`` its model
    copy moves to (None: where the model loads, the CPU)."""

    count: int
    num_cpus: float = 1
    num_gpus: float = 0
    device: str | None = None


def ray_actors(resources: Mapping[str, float], workers: int | None, units: int) -> RayActors:
    """The actors for a cluster with ``resources`` (``ray.cluster_resources()``).

    With GPUs in the cluster: one actor per GPU, each holding one GPU (``workers`` more than
    the GPUs share them: each actor asks for ``GPUs / workers``, so Ray packs them evenly);
    without: one actor per CPU, or ``workers``. Never more actors than units (an idle actor
    would still load the model)."""
    gpus = float(resources.get("GPU", 0) or 0)
    if gpus >= 1:
        count = workers or int(gpus)
        share = 1.0 if count <= gpus else gpus / count
        actors = RayActors(count, num_cpus=1, num_gpus=share, device="cuda")
    else:
        count = workers or max(1, int(resources.get("CPU", 1) or 1))
        actors = RayActors(count)
    return dataclasses.replace(actors, count=max(1, min(actors.count, units)))


class _RayWorker:
    """One Ray actor: loads the model once, then renders the units it is handed."""

    def __init__(self, source: ModelSource) -> None:
        self.source = source

    def render(self, unit: Unit, options: dict[str, Any]) -> UnitOutcome:
        return render_unit(self.source, unit, options)


def ray_outcomes(
    source: ModelSource,
    units: Sequence[Unit],
    options: dict[str, Any],
    workers: int | None = None,
    address: str | None = None,
) -> Iterator[UnitOutcome]:
    """Units on Ray: one actor per GPU, or per worker (each loads the model once, a torch
    model moves to the actor's GPU) pulling the next unit as it finishes one
    (:func:`ray_actors` says how many and with what). A lost worker is restarted and its unit
    retried (``RAY_RETRIES``).
    Ray is started here (``num_cpus=workers``) unless it runs already or ``address`` names a
    cluster; a Ray started here is shut down at the end."""
    ray = _import_ray()
    if address is not None:
        _check_reachable(address)
    started = False
    if not ray.is_initialized():
        try:
            if address is None:
                ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False,
                         log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        except Exception as exc:
            where = "a local Ray" if address is None else f"the Ray cluster at {address!r}"
            raise RuntimeError(f"executor='ray' could not start {where}: {exc}") from exc
        started = True
    try:
        yield from _ray_pull(ray, source, units, options, workers)
    finally:
        if started:
            ray.shutdown()


def _ray_pull(
    ray: Any, source: ModelSource, units: Sequence[Unit], options: dict[str, Any],
    workers: int | None,
) -> Iterator[UnitOutcome]:
    plan = ray_actors(ray.cluster_resources(), workers, len(units))
    actor = ray.remote(
        num_cpus=plan.num_cpus, num_gpus=plan.num_gpus, max_restarts=RAY_RETRIES,
        max_task_retries=RAY_RETRIES,
    )(_RayWorker)
    if plan.device is not None:
        source = dataclasses.replace(source, device=plan.device)
    actors = [actor.remote(source) for _ in range(plan.count)]
    queue = list(reversed(units))
    running: dict[Any, tuple[Any, Unit]] = {}
    try:
        for worker in actors:
            if queue:
                unit = queue.pop()
                running[worker.render.remote(unit, options)] = (worker, unit)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            worker, unit = running.pop(ready[0])
            if queue:
                nxt = queue.pop()
                running[worker.render.remote(nxt, options)] = (worker, nxt)
            try:
                yield ray.get(ready[0])
            except Exception as exc:  # retries used up, or the result was lost
                yield UnitOutcome(unit=unit, error=f"{type(exc).__name__}: {exc}")
    finally:
        for worker in actors:
            ray.kill(worker)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds when nothing listens at a ``host:port`` cluster address: Ray itself
    retries an unreachable address for minutes before it gives up. Addresses that are not
    ``[ray://]host:port`` (``"auto"``, ``"local"``) are left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RuntimeError(
            f"executor='ray' could not start the Ray cluster at {address!r}: nothing answers "
            f"at {host}:{port} ({exc}); start it with `ray start --head` or pass address=None "
            "for a local Ray"
        ) from exc


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            f"executor='ray' needs Ray, which is not installed: {RAY_INSTALL}"
        ) from exc
    return ray
