"""Every notebook in notebooks/ runs top to bottom on a fresh kernel, offline."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_is_a_quickstart_notebook() -> None:
    assert "quickstart.ipynb" in [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_without_errors(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel inherits these: fewer optimization steps and fewer training epochs keep the
    # suite fast; the notebooks read them with the full-length values as defaults.
    monkeypatch.setenv("CNN_WIDGETS_MAX_STEPS", "24")
    monkeypatch.setenv("CNN_WIDGETS_TRAIN_EPOCHS", "3")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # the pictures really come out: at least one PNG per rendering cell
    assert any("image/png" in o.get("data", {}) for o in outputs)
