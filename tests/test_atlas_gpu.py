"""The atlas on GPUs: how many Ray actors, with what share of a GPU, and a worker's model
moved to its device.

The placement logic runs everywhere (a stand-in for the Ray API reports the GPUs); the
rendering on a real GPU only where torch sees one (skipped here, and said so in the summary).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import cnn_widgets as cw
from cnn_widgets.atlas import executors, layer_dir, plan_units
from cnn_widgets.atlas import work as atlas_work
from cnn_widgets.atlas.executors import RayActors, ray_actors
from tests.test_atlas import SMALL, SMALL_UNITS, FakeRay, files

CUDA = torch.cuda.is_available()


@pytest.mark.parametrize(
    ("resources", "workers", "units", "expected"),
    [
        # No GPU: one actor per CPU, or per requested worker; no GPU asked for.
        ({"CPU": 2.0}, None, 10, RayActors(2)),
        ({"CPU": 16.0}, 3, 10, RayActors(3)),
        # GPUs: one actor per GPU, each holding a whole GPU, its model on "cuda".
        ({"CPU": 16.0, "GPU": 2.0}, None, 10, RayActors(2, 1, 1.0, "cuda")),
        ({"CPU": 16.0, "GPU": 4.0}, 2, 10, RayActors(2, 1, 1.0, "cuda")),
        # More workers than GPUs: they share them evenly (Ray packs 2 per GPU here).
        ({"CPU": 16.0, "GPU": 2.0}, 4, 10, RayActors(4, 1, 0.5, "cuda")),
        # Never more actors than units (each would load the model for nothing).
        ({"CPU": 16.0, "GPU": 8.0}, None, 3, RayActors(3, 1, 1.0, "cuda")),
        ({"CPU": 16.0}, None, 1, RayActors(1)),
        # A fraction of a GPU in the whole cluster is no GPU to plan for.
        ({"CPU": 2.0, "GPU": 0.5}, None, 10, RayActors(2)),
    ],
)
def test_ray_starts_one_actor_per_gpu_or_per_worker(
    resources: dict, workers: int | None, units: int, expected: RayActors
) -> None:
    assert ray_actors(resources, workers, units) == expected


def test_on_a_gpu_cluster_each_actor_asks_for_a_gpu_and_moves_its_model_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRay(resources={"CPU": 4.0, "GPU": 2.0})
    monkeypatch.setattr(executors, "_import_ray", lambda: fake)
    report = cw.atlas("lenet", tmp_path / "gpu", executor="ray", **SMALL)
    assert fake.options["num_gpus"] == 1.0 and fake.options["num_cpus"] == 1
    assert len(fake.actors) == 2 and fake.killed == fake.actors
    assert [s.device for s in fake.sources] == ["cuda", "cuda"]
    assert {s.fingerprint for s in fake.sources} == {report.fingerprint}
    if CUDA:  # the workers' models really went to the GPU: every unit rendered
        assert len(report.done) == SMALL_UNITS and not report.failed
    else:  # no GPU in this process: each unit says why it failed; nothing half-written
        assert not report.done and len(report.failed) == SMALL_UNITS
        assert all("CUDA" in error or "cuda" in error for _, error in report.failed)
        assert not list((tmp_path / "gpu").rglob("[0-9]*.png"))


def test_a_worker_given_a_device_loads_its_own_copy_there_and_draws_the_same(
    tmp_path: Path,
) -> None:
    # The source with a device is another cache key than the driver's (no device): the
    # worker loads, checks the fingerprint, then moves its own copy.
    here = cw.atlas("lenet", tmp_path / "here", **SMALL)
    source = atlas_work.ModelSource("demo:lenet", here.fingerprint, device="cpu")
    adapter = atlas_work.load_source(source)
    assert all(p.device.type == "cpu" for p in adapter.model.parameters())
    model = cw.zoo.load("lenet")
    units = plan_units(model, SMALL["layers"], SMALL["channels_per_unit"], SMALL["max_channels"])
    options = {"steps": SMALL["steps"]}
    moved = atlas_work.render_unit(source, units[0], options)
    direct = atlas_work.render_unit(model, units[0], options)
    assert moved.error is None and moved.pngs == direct.pngs


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device (none here): the GPU worker path")
def test_a_cuda_worker_renders_the_atlas_on_the_gpu(tmp_path: Path) -> None:
    here = cw.atlas("lenet", tmp_path / "here", **SMALL)
    source = atlas_work.ModelSource("demo:lenet", here.fingerprint, device="cuda")
    adapter = atlas_work.load_source(source)
    assert all(p.device.type == "cuda" for p in adapter.model.parameters())
    units = plan_units(adapter, SMALL["layers"], SMALL["channels_per_unit"],
                       SMALL["max_channels"])
    outcomes = [atlas_work.render_unit(source, u, {"steps": SMALL["steps"]}) for u in units]
    assert all(o.error is None and len(o.pngs) == len(o.unit.channels) for o in outcomes)
    # GPU kernels sum in another order: the activations agree with the CPU run's records
    # within float32 noise amplified by a few Adam steps, not bit for bit.
    cpu = {(u.layer, c): a for u in here.done
           for c, a in zip(u.channels, _activations(here, u), strict=True)}
    for outcome in outcomes:
        for channel, value in zip(outcome.unit.channels, outcome.activations, strict=True):
            expected = cpu[(outcome.unit.layer, channel)]
            assert abs(value - expected) <= 1e-2 * max(1.0, abs(expected))


def _activations(report: cw.AtlasReport, unit) -> list[float]:
    return [json.loads((report.out / layer_dir(unit.layer) / f"{c}.json").read_text())
            ["activation"] for c in unit.channels]


def test_the_cli_runs_a_shard_on_a_device_and_refuses_it_where_it_cannot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnn_widgets.__main__ import main

    common = ["atlas", "--model", "demo:lenet", "--layers", "conv1,pool1", "--max-channels",
              "4", "--channels-per-unit", "2", "--steps", "4", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "plain"), "--shard", "0/2"]) == 0
    assert main([*common, "--out", str(tmp_path / "cpu"), "--shard", "0/2",
                 "--device", "cpu"]) == 0
    assert files(tmp_path / "cpu") == files(tmp_path / "plain")  # same model, same place
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "ray"), "--executor", "ray",
                 "--device", "cuda"]) == 2
    assert "--device is for runs in this process" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "k"), "--framework", "keras",
                 "--device", "cuda"]) == 2
    assert "--device moves torch models" in capsys.readouterr().err
    if not CUDA:  # a GPU that is not there: said before anything is rendered
        assert main([*common, "--out", str(tmp_path / "gpu"), "--device", "cuda"]) == 2
        assert "CUDA" in capsys.readouterr().err
        assert not list((tmp_path / "gpu").rglob("*.png"))
