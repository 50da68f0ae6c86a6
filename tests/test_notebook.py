"""notebooks/user_vectors.ipynb: committed clean, and runs headless in a finished project."""

from __future__ import annotations

import base64
import io
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

from tests.conftest import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "user_vectors.ipynb"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KERNEL = "python3"
CELL_TIMEOUT_S = 300


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]

    assert code, "the notebook has no code cells"
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert notebook.metadata["kernelspec"]["name"] == KERNEL


@pytest.mark.slow
def test_notebook_runs_in_a_finished_project_and_draws_the_pca(finished_project: Path, monkeypatch):
    target = finished_project / "notebooks" / NOTEBOOK.name
    target.parent.mkdir(exist_ok=True)
    shutil.copy(NOTEBOOK, target)
    notebook = nbformat.read(target, as_version=4)
    # Which interpreter the kernel really is: the "python3" spec must resolve to this venv.
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"))
    for name in ("CLUE_PROJECT_PATH", "CLUE_KEDRO_ENV", "MPLBACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLUE_NUM_THREADS", "1")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")

    NotebookClient(
        notebook,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(finished_project)}},  # the kernel's cwd
    ).execute()  # raises CellExecutionError, naming the cell, if any cell fails

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    assert _stream_text(notebook.cells[-1]).strip() == sys.prefix

    (pca,) = [cell for cell in notebook.cells if "pca" in cell.metadata.get("tags", [])]
    images = [out.data["image/png"] for out in pca.outputs if "image/png" in out.get("data", {})]
    assert len(images) == 1, f"expected one PNG from the PCA cell, got {len(images)}"
    png = base64.b64decode(images[0])
    assert png.startswith(PNG_SIGNATURE)
    picture = Image.open(io.BytesIO(png)).convert("RGB")
    colours = picture.getcolors(maxcolors=picture.width * picture.height)
    assert picture.width > 300 and len(colours) > 50, "the PCA figure is (nearly) blank"
    assert "of the variance" in _stream_text(pca)
    assert "mean Jaccard with the 5 neighbours" in _stream_text(notebook.cells[-2])


def _stream_text(cell) -> str:
    return "".join(out.get("text", "") for out in cell.outputs if out.output_type == "stream")
