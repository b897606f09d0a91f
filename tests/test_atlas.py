"""The model atlas: plan, store, resumable runs, executors, shards (cnn_widgets.atlas).

Runs are tiny (LeNet, a few channels, 4 steps): what is checked is bookkeeping — every unit
once, nothing partial, resume does exactly what is missing, shards add up to one run — and
that every executor draws the same pictures.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnn_widgets as cw
from cnn_widgets.__main__ import main
from cnn_widgets.atlas import Unit, fingerprint, layer_dir, layer_name, plan_units
from cnn_widgets.atlas import work as atlas_work
from cnn_widgets.atlas.plan import normalize_options, settings_key
from cnn_widgets.atlas.store import write_atomic

FRAMEWORKS = ("torch", "keras")
# Two layers, four channels each, two per unit: four units, a few seconds on a busy CPU.
SMALL = {"layers": ["conv1", "pool1"], "max_channels": 4, "channels_per_unit": 2, "steps": 4,
         "progress": False}
SMALL_UNITS = 4


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def assert_whole_store(out: Path) -> None:
    """No temporary file left, every JSON parses, every PNG decodes."""
    found = files(out)
    assert found, "the store is empty"
    for name, data in found.items():
        assert not name.endswith(".tmp") and not Path(name).name.startswith("."), name
        if name.endswith(".json"):
            json.loads(data)
        elif name.endswith(".png"):
            Image.open(io.BytesIO(data)).load()


def channel_files(report: cw.AtlasReport) -> list[str]:
    return sorted(str(p.relative_to(report.out)) for p in report.out.rglob("[0-9]*.png"))


# -- the store's names --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["..", ".", "../../etc", "/abs/path", "a/b", "a\\b", ".hidden", "%2E", "x y", "naïve",
     "layer1.0.conv1", "model/block_1/conv", "<img src=x onerror=alert(1)>", "-", "~"],
)
def test_a_layer_directory_stays_inside_the_store_and_gives_the_name_back(
    name: str, tmp_path: Path
) -> None:
    directory = layer_dir(name)
    assert "/" not in directory and "\\" not in directory
    assert not directory.startswith(".")  # never "..", never hidden
    assert layer_name(directory) == name
    made = tmp_path / directory
    made.mkdir()
    assert made.resolve().parent == tmp_path.resolve()


def test_distinct_layer_names_get_distinct_directories() -> None:
    names = ["a/b", "a%2Fb", "a_b", ".a", "%2Ea", "a.", "A"]
    assert len({layer_dir(n) for n in names}) == len(names)


def test_an_empty_layer_name_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        layer_dir("")


def test_a_failed_atomic_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_atomic(tmp_path / "x.json", "text, not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# -- the plan -----------------------------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_plan_covers_every_spatial_layer_in_batches(framework: str) -> None:
    model = cw.zoo.load("lenet", framework=framework)
    units = plan_units(model, channels_per_unit=3)
    spatial = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2"]  # not flatten, fc1 ...
    assert list(dict.fromkeys(u.layer for u in units)) == spatial
    for layer in spatial:
        channels = [c for u in units if u.layer == layer for c in u.channels]
        assert channels == list(range(model.layer(layer).output_shape[0]))
    assert max(len(u.channels) for u in units) == 3


def test_layers_are_checked_against_the_spatial_ones() -> None:
    model = cw.zoo.load("lenet")
    with pytest.raises(ValueError, match=r"'fc1'.*Valid layers: 'conv1', 'relu1'"):
        plan_units(model, ["conv1", "fc1"])
    with pytest.raises(ValueError, match="channels_per_unit"):
        plan_units(model, channels_per_unit=0)
    assert plan_units(model, ["pool1", "conv1"], 8)[0] == Unit("conv1", tuple(range(8)))


def test_the_settings_key_ignores_how_defaults_are_spelled() -> None:
    plain = settings_key(normalize_options({}))
    assert settings_key(normalize_options({"steps": 256, "lr": 0.05, "size": None})) == plain
    assert settings_key(normalize_options({"batch_size": 4})) == plain  # execution only
    assert settings_key(normalize_options({"seed": 1})) != plain
    assert settings_key(normalize_options({"size": 64})) == settings_key(
        normalize_options({"size": (64, 64)})
    )
    with pytest.raises(TypeError, match=r"'objective'.*decay_power"):
        normalize_options({"objective": "neuron"})
    with pytest.raises(ValueError, match="'lucid', 'naive'"):
        normalize_options({"recipe": "magic"})


# -- a run --------------------------------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_run_writes_every_channel_once_and_a_rerun_skips_them(
    framework: str, tmp_path: Path
) -> None:
    model = cw.zoo.load("lenet", framework=framework)
    before = model.snapshot()
    report = cw.atlas(model, tmp_path, **SMALL)
    assert model.same_state(before, model.snapshot())
    assert len(report.done) == len(set(report.done)) == SMALL_UNITS and not report.failed
    assert report.out == tmp_path / report.fingerprint
    assert channel_files(report) == sorted(
        f"{layer}/{c}.png" for layer in ("conv1", "pool1") for c in range(4)
    )
    assert_whole_store(tmp_path)
    atlas_json = json.loads((report.out / "atlas.json").read_text())
    assert atlas_json["framework"] == framework
    assert [entry["name"] for entry in atlas_json["layers"]][:3] == ["conv1", "relu1", "pool1"]
    for layer in ("conv1", "pool1"):
        manifest = json.loads((report.out / layer / "manifest.json").read_text())
        entries = manifest["channels"]
        assert [e["channel"] for e in entries] == [0, 1, 2, 3]
        assert sorted(e["rank"] for e in entries) == [1, 2, 3, 4]
        best = max(entries, key=lambda e: e["activation"])
        assert best["rank"] == 1
        record = json.loads((report.out / layer / "0.json").read_text())
        assert record["settings"]["steps"] == 4 and record["curve"]["steps"][-1] == 4
        assert record["activation"] == record["curve"]["objective"][-1]
        png = Image.open(report.out / layer / "0.png")
        assert png.size == (28, 28) and png.mode == "L"  # LeNet's own size, gray
    written = files(tmp_path)
    again = cw.atlas(model, tmp_path, **SMALL)
    assert again.done == () and len(again.skipped) == SMALL_UNITS
    assert files(tmp_path) == written  # untouched, byte for byte


def test_the_pictures_are_feature_viz_pictures(tmp_path: Path) -> None:
    model = cw.zoo.load("lenet")
    report = cw.atlas(model, tmp_path, layers=["conv2"], max_channels=3, channels_per_unit=3,
                      steps=4, seed=3, progress=False)
    direct = cw.feature_viz(model, "conv2", [0, 1, 2], steps=4, seed=3)
    for c in range(3):
        stored = np.asarray(Image.open(report.out / "conv2" / f"{c}.png"))
        expected = np.round(np.clip(direct[c, :, :, 0], 0, 1) * 255)
        # Same process, same batch: the same floats; the only step between is uint8 rounding.
        np.testing.assert_array_equal(stored, expected.astype(np.uint8))


class Boom(Exception):
    pass


def test_an_interrupted_run_resumes_with_exactly_the_missing_units(tmp_path: Path) -> None:
    model = cw.zoo.load("lenet")
    before = model.snapshot()
    seen: list[int] = []

    def stop_after_two(report: cw.AtlasReport) -> None:
        seen.append(len(report.done))
        if len(report.done) == 2:
            raise Boom

    with pytest.raises(Boom):
        cw.atlas(model, tmp_path, callback=stop_after_two, **SMALL)
    assert model.same_state(before, model.snapshot())
    assert_whole_store(tmp_path)
    first = files(tmp_path)
    rest = cw.atlas(model, tmp_path, **SMALL)
    full = plan_units(model, SMALL["layers"], 2, 4)
    assert set(rest.skipped) == set(full[:2]) and set(rest.done) == set(full[2:])
    after = files(tmp_path)
    assert {k: after[k] for k in first if "manifest" not in k} == {
        k: v for k, v in first.items() if "manifest" not in k
    }  # what finished before is untouched
    assert_whole_store(tmp_path)


def test_a_callback_returning_false_stops_and_says_so(tmp_path: Path) -> None:
    report = cw.atlas("lenet", tmp_path, callback=lambda r: False, **SMALL)
    assert report.stopped and len(report.done) == 1 and len(report.missing) == SMALL_UNITS - 1


def test_a_failing_unit_is_recorded_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = atlas_work.feature_viz

    def flaky(adapter, layer, channels, **options):
        if layer == "pool1" and channels[0] == 2:
            raise ArithmeticError("unit exploded")
        return real(adapter, layer, channels, **options)

    monkeypatch.setattr(atlas_work, "feature_viz", flaky)
    report = cw.atlas("lenet", tmp_path, **SMALL)
    assert [(str(u), e) for u, e in report.failed] == [
        ("pool1[2..3]", "ArithmeticError: unit exploded")
    ]
    assert len(report.done) == SMALL_UNITS - 1
    error = report.out / "pool1" / "unit-2-3.error.json"
    assert json.loads(error.read_text())["error"] == "ArithmeticError: unit exploded"
    assert not (report.out / "pool1" / "manifest.json").exists()  # the layer is incomplete
    monkeypatch.setattr(atlas_work, "feature_viz", real)
    retry = cw.atlas("lenet", tmp_path, **SMALL)
    assert [str(u) for u in retry.done] == ["pool1[2..3]"] and not error.exists()
    assert (report.out / "pool1" / "manifest.json").exists()


def test_the_driver_reads_a_layers_records_once_when_it_completes_not_per_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnn_widgets.atlas.store import Store

    reads: list[str] = []
    real = Store.records
    monkeypatch.setattr(Store, "records", lambda self, layer: (reads.append(layer),
                                                               real(self, layer))[1])
    options = {**SMALL, "channels_per_unit": 1}  # four units per layer
    report = cw.atlas("lenet", tmp_path, **options)
    assert len(report.done) == 8
    # Once before the run (a layer completed by a run killed just then), once at the end of
    # each layer: never once per unit, which grows with the square of a layer's channels.
    assert sorted(reads) == ["conv1", "conv1", "pool1", "pool1"]
    for layer in ("conv1", "pool1"):
        manifest = json.loads((report.out / layer / "manifest.json").read_text())
        assert [e["channel"] for e in manifest["channels"]] == [0, 1, 2, 3]


# -- bad input ----------------------------------------------------------------------------------
def test_an_out_holding_another_models_atlas_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    first = cw.atlas("lenet", tmp_path, **SMALL)
    written = files(tmp_path)
    other = cw.zoo.load("lenet")
    other.model.conv1.bias.data += 1.0  # another model: other weights
    with pytest.raises(ValueError, match=f"{first.fingerprint}.*this model's fingerprint"):
        cw.atlas(other, tmp_path, **SMALL)
    assert files(tmp_path) == written
    added = cw.atlas(other, tmp_path, add=True, **SMALL)
    assert added.fingerprint != first.fingerprint and len(added.done) == SMALL_UNITS


def test_bad_arguments_name_what_is_valid(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="executor must be one of"):
        cw.atlas("lenet", tmp_path, executor="dask", **SMALL)
    with pytest.raises(TypeError, match="'objective'"):
        cw.atlas("lenet", tmp_path, objective="neuron", **SMALL)
    with pytest.raises(ValueError, match="shard must be"):
        cw.atlas("lenet", tmp_path, shard=(2, 2), **SMALL)
    with pytest.raises(ValueError, match="lr must be"):  # feature_viz's own check, up front
        cw.atlas("lenet", tmp_path, lr=-1.0, **SMALL)
    with (
        pytest.raises(ValueError, match=r"torch model object.*executor=None"),
        ProcessPoolExecutor(1) as pool,
    ):
        cw.atlas(cw.zoo.load("lenet"), tmp_path, executor=pool, **SMALL)
    assert list(tmp_path.iterdir()) == []


# -- shards and the command line ------------------------------------------------------------------
def test_two_shards_equal_one_full_run_file_for_file(tmp_path: Path, capsys) -> None:
    common = ["atlas", "--model", "demo:lenet", "--layers", "conv1,pool1", "--max-channels",
              "4", "--channels-per-unit", "2", "--steps", "4", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "full")]) == 0
    assert main([*common, "--out", str(tmp_path / "shards"), "--shard", "1/2"]) == 0
    half = files(tmp_path / "shards")
    assert not any("manifest" in name for name in half)  # no layer is complete yet
    assert main([*common, "--out", str(tmp_path / "shards"), "--shard", "0/2"]) == 0
    assert files(tmp_path / "shards") == files(tmp_path / "full")
    assert "4 done" in capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "x"), "--shard", "2/2"]) == 2
    assert "--shard is i/N" in capsys.readouterr().err


# -- executors ------------------------------------------------------------------------------------
def test_a_spawned_process_pool_draws_the_same_pictures(tmp_path: Path) -> None:
    """EfficientNet-Lite0's first two layers, two channels each, one per unit."""
    options = {"layers": ["_conv_stem", "_bn0"], "max_channels": 2, "channels_per_unit": 1,
               "steps": 2, "size": 32, "progress": False}
    here = cw.atlas("efficientnet_lite0", tmp_path / "here", **options)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:  # one start-up: ~10 s here
        there = cw.atlas("efficientnet_lite0", tmp_path / "pool", executor=pool, **options)
    assert len(there.done) == len(set(there.done)) == 4 and not there.failed
    # Same model, same batches, same CPU: the same bits (checked, not assumed).
    assert files(tmp_path / "pool") == files(tmp_path / "here")
    assert here.fingerprint == there.fingerprint


def test_a_keras_model_object_travels_to_workers_as_a_keras_file(tmp_path: Path) -> None:
    """What a worker process does with it, here (a spawned pool of TensorFlow workers costs
    ~40 s on this machine; checked by hand: same bytes as in-process)."""
    from cnn_widgets.atlas.run import _worker_model
    from cnn_widgets.atlas.store import Store as AtlasStore

    model = cw.zoo.load("lenet", framework="keras")
    store = AtlasStore(tmp_path, fingerprint(model))
    source, cleanup = _worker_model(model, None, store, "futures", "auto")
    assert source.spec.endswith(".keras") and Path(source.spec).is_file()
    atlas_work._CACHE.pop(source)  # forget the driver's adapter: load from the file
    loaded = atlas_work.load_source(source)
    assert loaded is not model and fingerprint(loaded) == store.fingerprint
    atlas_work._CACHE.pop(source)
    cleanup()
    assert not Path(source.spec).exists()


def test_a_run_killed_with_sigkill_resumes_and_sweeps_stale_temporary_files(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "cnn_widgets", "atlas", "--model", "demo:lenet", "--out",
               str(out), "--layers", "conv1,pool1", "--max-channels", "4",
               "--channels-per-unit", "1", "--steps", "16", "--quiet"]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    process = subprocess.Popen(command, cwd=root, env=env)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*/*/*.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed = files(out)
    visible = {k: v for k, v in killed.items() if not Path(k).name.startswith(".")}
    assert 0 < sum(k.endswith(".json") and "atlas" not in k for k in visible) < 8
    for name, data in visible.items():  # whatever was there when it died is whole
        if name.endswith(".json"):
            json.loads(data)
        elif name.endswith(".png"):
            Image.open(io.BytesIO(data)).load()
    fingerprint_dir = next(p for p in out.iterdir() if p.is_dir())
    stale = fingerprint_dir / "conv1" / ".3.png.999.dead.tmp"  # as a killed writer leaves it
    stale.write_bytes(b"half a png")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    report = cw.atlas("lenet", out, layers=["conv1", "pool1"], max_channels=4,
                      channels_per_unit=1, steps=16, progress=False)
    assert len(report.done) + len(report.skipped) == 8 and not report.failed
    assert not stale.exists()
    assert_whole_store(out)
    for name, data in visible.items():  # what finished before the kill is untouched
        if "manifest" not in name:
            assert files(out)[name] == data


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_weight_arrays_are_copies_in_a_fixed_order_and_the_fingerprint_follows_them(
    framework: str,
) -> None:
    model = cw.zoo.load("lenet", framework=framework)
    before = model.snapshot()
    first = model.weight_arrays()
    assert [name for name, _ in first] == [name for name, _ in model.weight_arrays()]
    assert len(first) == 8 and all(isinstance(a, np.ndarray) for _, a in first)
    first[0][1][...] = 0.0  # a copy: the model does not change
    assert model.same_state(before, model.snapshot())
    original = fingerprint(model)
    assert fingerprint(cw.zoo.load("lenet", framework=framework)) == original
    if framework == "torch":
        model.model.conv2.weight.data[0, 0, 0, 0] += 1e-6
    else:
        kernel = model.model.get_layer("conv2").kernel
        changed = kernel.numpy()
        changed.flat[0] += 1e-6
        kernel.assign(changed)
    assert fingerprint(model) != original


# -- the Ray executor's logic, on a stand-in for the Ray API it uses -----------------------------
class FakeRef:
    def __init__(self, value: object) -> None:
        self.value = value


class FakeRay:
    """What ``executors.ray_outcomes`` calls, done at once in this process: actors are plain
    objects, ``remote`` calls run immediately, ``lost`` units fail as a lost worker would."""

    def __init__(
        self, lost: tuple[str, ...] = (), resources: dict[str, float] | None = None
    ) -> None:
        self.lost, self.killed, self.actors, self.options = lost, [], [], {}
        self.resources = resources or {"CPU": 2.0}
        self.sources: list = []  # what each actor was started with

    def is_initialized(self) -> bool:
        return True

    def cluster_resources(self) -> dict[str, float]:
        return dict(self.resources)

    def remote(self, **options: object):
        self.options = options
        fake = self

        class ActorClass:
            @staticmethod
            def remote(*args: object) -> object:
                instance = fake_actor(fake, args)
                fake.actors.append(instance)
                return instance

        return lambda cls: (setattr(fake, "cls", cls), ActorClass)[1]

    def wait(self, refs: list, num_returns: int = 1) -> tuple[list, list]:
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref: FakeRef) -> object:
        if isinstance(ref.value, BaseException):
            raise ref.value
        return ref.value

    def kill(self, actor: object) -> None:
        self.killed.append(actor)


def fake_actor(fake: FakeRay, args: tuple) -> object:
    worker = fake.cls(*args)
    fake.sources.append(args[0])

    class Method:
        @staticmethod
        def remote(unit: Unit, options: dict) -> FakeRef:
            if str(unit) in fake.lost:
                return FakeRef(RuntimeError("ActorDiedError: the actor died unexpectedly"))
            return FakeRef(worker.render(unit, options))

    return type("Actor", (), {"render": Method})()


def test_the_ray_executor_pulls_every_unit_once_and_records_lost_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnn_widgets.atlas import executors

    fake = FakeRay(lost=("pool1[2..3]",))
    monkeypatch.setattr(executors, "_import_ray", lambda: fake)
    here = cw.atlas("lenet", tmp_path / "here", **SMALL)
    there = cw.atlas("lenet", tmp_path / "ray", executor="ray", workers=2, **SMALL)
    assert len(fake.actors) == 2 and fake.killed == fake.actors  # none left behind
    assert fake.options["max_restarts"] >= 1 and fake.options["max_task_retries"] >= 1
    assert [str(u) for u, _ in there.failed] == ["pool1[2..3]"]
    assert "ActorDiedError" in there.failed[0][1]
    assert sorted(map(str, there.done)) == sorted(str(u) for u in here.done if u not in
                                                  {there.failed[0][0]})
    fake.lost = ()
    rest = cw.atlas("lenet", tmp_path / "ray", executor="ray", **SMALL)
    assert [str(u) for u in rest.done] == ["pool1[2..3]"]
    assert files(tmp_path / "ray") == files(tmp_path / "here")


def test_steps_capped_by_the_environment_are_part_of_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    full = settings_key(normalize_options({"steps": 64}))
    monkeypatch.setenv("CNN_WIDGETS_MAX_STEPS", "8")  # feature_viz would run 8 steps
    assert normalize_options({"steps": 64})["steps"] == 8
    assert settings_key(normalize_options({"steps": 64})) != full
