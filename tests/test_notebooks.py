"""The chapter notebooks: their committed expectations hold as recorded and are guarded by nbval,
chapter 1 executes under papermill (``make book``'s path), and the book builds cleanly.

``make test`` executes every chapter once, under nbval, which compares each guarded output with
the committed one, the expectations table included (so a claim that stops holding, or starts
to, fails there). Papermill runs chapter 1 here, in a copy (``tmp_path``), never in place;
``FPLAB_PAPERMILL_ALL=1`` runs every chapter under papermill too (what ``make book`` does).
"""

import os
import subprocess
import sys

import nbformat
import pytest

from expectations import check
from fplab.runner import SETUP_CELL, execute, notebook_paths
from fplab.paths import REPO_ROOT

NOTEBOOKS = notebook_paths()
IDS = [p.stem for p in NOTEBOOKS]
PAPERMILL = NOTEBOOKS if os.environ.get("FPLAB_PAPERMILL_ALL") else NOTEBOOKS[:1]


@pytest.mark.notebooks
@pytest.mark.parametrize("path", PAPERMILL, ids=[p.stem for p in PAPERMILL])
def test_notebook_executes_with_papermill(path, tmp_path):
    out = tmp_path / path.name
    execute(path, out, {"profile": "fast", "seed": 0})
    executed = nbformat.read(out, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    problems = check(path.stem, executed)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_expectations_are_as_recorded(path):
    """The committed outputs (what the site shows) agree with the record of what reproduces."""
    problems = check(path.stem, nbformat.read(path, as_version=4))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_expectations_are_guarded_by_nbval(path):
    """nbval (the only execution of chapters 2-7 in ``make test``) compares the expectations
    table: it sits in a guarded cell, and its shown text carries every verdict and our figure."""
    nb = nbformat.read(path, as_version=4)
    found = 0
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            rows = out.get("metadata", {}).get("fplab", {}).get("expectations", [])
            if not rows:
                continue
            found += len(rows)
            assert "nbval-check-output" in cell.metadata.get("tags", []), f"cell {i} unguarded"
            data = out.get("data", {})
            shown = data.get("text/html") or data.get("text/plain", "")
            verdicts = shown.count("not reproduced")
            assert verdicts == sum(not r["holds"] for r in rows), f"cell {i}: verdicts not shown"
            assert shown.count("reproduced") - verdicts >= sum(r["holds"] for r in rows)
            for row in rows:
                assert str(row["ours"]).split(" ")[0] in shown, (i, row["ours"])
    assert found


def run_setup_cell(monkeypatch, installed: bool) -> list:
    """Execute the set-up cell with pip replaced by a recorder; return the commands it ran."""
    import importlib.util
    import subprocess as sp
    calls = []
    monkeypatch.setattr(sp, "run", lambda cmd, **kw: calls.append(cmd))
    if not installed:
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "fplab" else real(name, *a))
    exec(SETUP_CELL, {})
    return calls


def test_setup_cell_installs_only_where_fplab_is_missing(monkeypatch, capsys):
    assert run_setup_cell(monkeypatch, installed=True) == []
    assert "data root:" in capsys.readouterr().out
    calls = run_setup_cell(monkeypatch, installed=False)
    assert len(calls) == 1 and calls[0][1:4] == ["-m", "pip", "install"]
    assert calls[0][-1] == "fplab @ git+https://github.com/fplab-course/fplab"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_conventions(path):
    """A title; a set-up cell first (installs fplab on Colab / Binder); a parameters cell with
    profile / seed / data_root; key results guarded by nbval, with committed outputs."""
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source == SETUP_CELL, "the first code cell must be fplab.runner.SETUP_CELL"
    assert "nbval-ignore-output" in code[0].metadata.get("tags", [])
    tagged = {tag: [c for c in nb.cells if tag in c.metadata.get("tags", [])]
              for tag in ("parameters", "nbval-check-output")}
    assert len(tagged["parameters"]) == 1 and code[1] is tagged["parameters"][0]
    source = tagged["parameters"][0].source
    for name in ("profile", "seed", "data_root"):
        assert f"{name} =" in source
    assert tagged["nbval-check-output"], "no cell's results are guarded by nbval"
    for cell in tagged["nbval-check-output"]:
        assert cell.outputs, "a checked cell must have committed outputs to compare"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_chapter_teaches_with_objectives_exercises_and_a_summary(path):
    """What a student gets from every chapter: learning objectives in the title cell, exercises
    (one block at the end, or one per section) each block with its worked solutions, and a
    summary after them."""
    import re
    nb = nbformat.read(path, as_version=4)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert "**Learning objectives.**" in markdown[0]
    lines = "\n".join(markdown).splitlines()
    heading = re.compile(r"(#{2,3} Exercises|```\{admonition\} Exercises)\s*$")
    blocks = [i for i, line in enumerate(lines) if heading.match(line)]
    assert blocks, "no exercises ('## Exercises', '### Exercises' or an Exercises admonition)"
    exercise_cells = [m for m in markdown if any(heading.match(x) for x in m.splitlines())]
    numbered = sum(len(re.findall(r"^\d+\. ", m, flags=re.M)) for m in exercise_cells)
    assert numbered >= 3, f"{numbered} numbered exercises"
    solutions = sum(len(re.findall(r":::\{dropdown\} Solutions?|:class: dropdown", m))
                    for m in markdown)
    assert solutions >= len(blocks), "every exercises block needs its solutions"
    summary = [i for i, line in enumerate(lines) if line.strip() == "## Summary"]
    assert summary and summary[-1] > blocks[0], "a '## Summary' after the exercises"


@pytest.mark.book
def test_book_builds_without_warnings():
    """The site builds from the committed notebooks with warnings as errors."""
    subprocess.run([sys.executable, "-m", "fplab", "book", "--no-execute"], cwd=REPO_ROOT,
                   check=True)
    assert (REPO_ROOT / "_build" / "html" / "index.html").exists()


def _png_width(b64: str) -> int:
    import base64
    import struct
    head = base64.b64decode(b64[:64])
    return struct.unpack(">I", head[16:20])[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_figures_and_code_fit_the_page_column(path):
    """What a student reads on the site: figures drawn for the 784 px column (<= 8 in at the
    inline backend's 100 dpi, so 10 pt text stays 10 pt), code lines that fit the code box."""
    nb = nbformat.read(path, as_version=4)
    wide_figures, long_lines = [], []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        long_lines += [f"cell {i}: {line[:40]}..." for line in cell.source.splitlines()
                       if len(line) > 88]
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png and _png_width(png) > 850:
                wide_figures.append(f"cell {i}: {_png_width(png)} px wide")
    assert not wide_figures, wide_figures
    assert not long_lines, long_lines
