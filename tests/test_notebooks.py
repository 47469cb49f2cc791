"""Every chapter notebook executes under papermill (fast profile); the book builds cleanly.

The notebooks run in a copy (``tmp_path``), never in place. Models they train land in the zoo
(``$FPLAB_CACHE``), so the nbval pass that follows in ``make test`` runs warm.
"""

import subprocess
import sys

import nbformat
import pytest

from fplab.cli import REPO_ROOT, execute, notebook_paths

NOTEBOOKS = notebook_paths()


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_with_papermill(path, tmp_path):
    out = tmp_path / path.name
    execute(path, out, {"profile": "fast", "seed": 0})
    executed = nbformat.read(out, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_conventions(path):
    """A parameters cell with profile / seed / data_root; key results guarded by nbval."""
    nb = nbformat.read(path, as_version=4)
    tagged = {tag: [c for c in nb.cells if tag in c.metadata.get("tags", [])]
              for tag in ("parameters", "nbval-check-output")}
    assert len(tagged["parameters"]) == 1
    source = tagged["parameters"][0].source
    for name in ("profile", "seed", "data_root"):
        assert f"{name} =" in source
    assert tagged["nbval-check-output"], "no cell's results are guarded by nbval"
    for cell in tagged["nbval-check-output"]:
        assert cell.outputs, "a checked cell must have committed outputs to compare"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.book
def test_book_builds_without_warnings():
    """The site builds from the committed notebooks with warnings as errors."""
    subprocess.run([sys.executable, "-m", "fplab", "book", "--no-execute"], cwd=REPO_ROOT,
                   check=True)
    assert (REPO_ROOT / "_build" / "html" / "index.html").exists()
