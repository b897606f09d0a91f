"""The command line renders the bundled models and user model files to PNG."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnn_widgets.__main__ import main


def read_png(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img)


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_render_filters_of_the_bundled_lenet(tmp_path, framework, capsys) -> None:
    out = tmp_path / "f.png"
    code = main(["render", "--model", "demo:lenet", "--framework", framework, "--layer", "conv1",
                 "--what", "filters", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    pixels = read_png(out)
    # 8 kernels of 5x5 tile to 17x17 px (3x3 slots), enlarged 30x (nearest 512) in blocks.
    assert pixels.shape[:2] == (510, 510) and pixels.std() > 0
    assert (pixels[::30, ::30] == pixels[29::30, 29::30]).all()
    assert "(510x510 px: 17x17 at 30x)" in capsys.readouterr().out


def test_scale_1_writes_the_natural_size_and_n_that_factor(tmp_path) -> None:
    natural, big = tmp_path / "n.png", tmp_path / "b.png"
    args = ["render", "--model", "demo:lenet", "--framework", "torch", "--layer", "conv1"]
    assert main([*args, "--out", str(natural), "--scale", "1"]) == 0
    assert main([*args, "--out", str(big), "--scale", "4"]) == 0
    small = read_png(natural)
    assert small.shape[:2] == (17, 17)
    np.testing.assert_array_equal(read_png(big)[::4, ::4], small)


@pytest.mark.parametrize("scale", ["0", "-3"])
def test_a_scale_below_1_is_one_clear_line_and_no_file(tmp_path, capsys, scale) -> None:
    out = tmp_path / "sub" / "x.png"
    assert main(["render", "--model", "demo:lenet", "--layer", "conv1", "--out", str(out),
                 "--scale", scale]) == 2
    assert f"scale must be an int >= 1 (1: natural size), got {scale}" in capsys.readouterr().err
    assert not out.parent.exists()


def test_a_scale_that_is_not_a_whole_number_is_refused_by_the_parser(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["render", "--model", "demo:lenet", "--layer", "conv1", "--out",
              str(tmp_path / "x.png"), "--scale", "2.5"])
    assert exc.value.code == 2
    assert "--scale: invalid int value: '2.5'" in capsys.readouterr().err


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_render_activations_of_a_sample_digit(tmp_path, framework) -> None:
    out = tmp_path / "a.png"
    assert main(["render", "--model", "demo:lenet", "--framework", framework, "--layer", "relu1",
                 "--what", "activations", "--image", "digit3", "--out", str(out)]) == 0
    assert read_png(out).std() > 0


def test_render_top_classes_of_the_output_layer(tmp_path) -> None:
    out = tmp_path / "p.png"
    assert main(["render", "--model", "demo:lenet", "--framework", "torch", "--layer", "-1",
                 "--what", "activations", "--image", "digit7", "--out", str(out)]) == 0
    assert read_png(out).shape[1] >= 200


def test_the_layer_table_is_printed(capsys) -> None:
    assert main(["layers", "--model", "demo:lenet", "--framework", "keras"]) == 0
    text = capsys.readouterr().out
    assert "conv1" in text and "fc2" in text and "parameters" in text


def test_a_keras_model_file_loads_in_safe_mode(tmp_path) -> None:
    import keras

    model = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(4, 3, name="c")])
    path = tmp_path / "m.keras"
    model.save(path)
    out = tmp_path / "k.png"
    assert main(["render", "--model", str(path), "--layer", "c", "--out", str(out),
                 "--scale", "1"]) == 0
    assert read_png(out).shape[:2] == (7, 7)  # 4 kernels of 3x3 in a 2x2 grid, 1 px gaps


def test_a_torch_export_program_loads_with_hooks_intact(tmp_path) -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 12, 12),)), path)
    out = tmp_path / "t.png"
    assert main(["render", "--model", str(path), "--input-shape", "3,12,12", "--layer", "0",
                 "--what", "activations", "--view", "grid", "--image", "chelsea",
                 "--out", str(out)]) == 0
    assert read_png(out).std() > 0


def test_errors_are_one_clear_line_and_a_nonzero_exit(tmp_path, capsys) -> None:
    code = main(["render", "--model", "demo:lenet", "--framework", "torch", "--layer", "conv9",
                 "--out", str(tmp_path / "x.png")])
    assert code == 2
    assert "no layer named 'conv9'" in capsys.readouterr().err
    assert main(["render", "--model", str(tmp_path / "nope.keras"), "--layer", "0",
                 "--out", str(tmp_path / "y.png")]) == 2


def test_help_names_the_subcommands(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "render" in capsys.readouterr().out
