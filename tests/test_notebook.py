"""reports/api.ipynb runs top to bottom in a real Jupyter kernel, so the notebook the README points to never rots."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[dev]' (nbclient, nbformat, ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[dev]' (nbclient, nbformat, ipykernel)")

NOTEBOOK = Path(__file__).resolve().parent.parent / "reports" / "api.ipynb"


def test_the_api_notebook_runs_and_draws_the_comparison(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel's torch: tiny models train fastest on one thread
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [cell.outputs for cell in notebook.cells if cell.cell_type == "code"]
    assert not [o for out in outputs for o in out if o.output_type == "error"]
    text = "\n".join(o.get("data", {}).get("text/plain", "") for out in outputs for o in out)
    assert "('mwt', None)" in text and "('nemo', None)" in text  # every record without error
    assert "module_acc_mean" in text and "verdict" in text  # the results table and the comparison
    assert any("image/png" in o.get("data", {}) for out in outputs for o in out)  # the plot
    assert list((tmp_path / "runs").rglob("record.json"))  # the grid ran where the notebook runs
