"""The seed's walk-through notebook: stored without outputs, and executed top to bottom by a
kernel running this very interpreter (the venv's), failing on any cell error."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "lora_rank_demo.ipynb"
KERNEL = "loralab-test-python"


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "the notebook has no code cell"
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec whose argv is ``sys.executable``, first on JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "loralab test kernel", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(
        [str(tmp_path / "jupyter"), os.environ.get("JUPYTER_PATH", "")]).rstrip(os.pathsep))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")         # small tensors: one thread is enough
    return KERNEL


def test_notebook_runs_without_errors(venv_kernel, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # One extra cell, not stored: which interpreter did the kernel run?
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = nbclient.NotebookClient(nb, kernel_name=venv_kernel, timeout=300,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()                     # raises CellExecutionError on any failing cell
    printed = nb.cells[-1].outputs[0]["text"].strip()
    assert Path(printed).resolve() == Path(sys.executable).resolve()
    kinds = {o["output_type"] for c in nb.cells if c.cell_type == "code" for o in c.outputs}
    assert "error" not in kinds
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) == 1              # the seed's figure was drawn
