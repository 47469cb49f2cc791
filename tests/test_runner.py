"""Paths a user gives are read from where they gave them, not from notebooks/ (papermill's
working directory)."""

import nbformat
import pytest

from fplab import cli, runner


def test_relative_paths_are_resolved_against_the_users_directory(tmp_path):
    env = {"FPLAB_DATA": "../shared/datasets", "FPLAB_CACHE": "~/c", "OTHER": "x"}
    runner.resolve_user_paths(env, cwd=tmp_path / "repo")
    assert env["FPLAB_DATA"] == str((tmp_path / "shared" / "datasets").resolve())
    assert env["FPLAB_CACHE"].endswith("/c") and not env["FPLAB_CACHE"].startswith("~")
    assert env["OTHER"] == "x"


def tiny_notebook(path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# paths"),
                nbformat.v4.new_code_cell("from fplab.paths import data_root, cache_dir\n"
                                          "assert (data_root() / 'MARKER').exists(), data_root()\n"
                                          "assert (cache_dir() / 'CACHED').exists(), cache_dir()\n"
                                          "print(data_root())")]
    nbformat.write(nb, path)


@pytest.mark.notebooks
def test_notebook_runs_with_a_relative_data_root(tmp_path, monkeypatch):
    """As the README says: ``export FPLAB_DATA=<relative path>``, then run the notebooks."""
    (tmp_path / "mydata").mkdir()
    (tmp_path / "mydata" / "MARKER").touch()
    (tmp_path / "mycache").mkdir()
    (tmp_path / "mycache" / "CACHED").touch()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FPLAB_DATA", "mydata")
    monkeypatch.setenv("FPLAB_CACHE", "mycache")
    tiny_notebook(tmp_path / "paths.ipynb")
    runner.execute(tmp_path / "paths.ipynb", tmp_path / "out.ipynb", {})
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.cells[1].outputs[0]["text"].strip() == str((tmp_path / "mydata").resolve())


def test_cell_timeout_default_override_and_bad_values():
    assert runner.cell_timeout({}) == runner.CELL_TIMEOUT
    assert runner.cell_timeout({"FPLAB_CELL_TIMEOUT": "120"}) == 120
    assert runner.cell_timeout({"FPLAB_CELL_TIMEOUT": "0"}) is None
    for bad in ("-5", "ten"):
        with pytest.raises(ValueError, match="FPLAB_CELL_TIMEOUT"):
            runner.cell_timeout({"FPLAB_CELL_TIMEOUT": bad})


@pytest.mark.notebooks
def test_a_stuck_cell_fails_instead_of_hanging(tmp_path):
    """papermill alone waits forever; the runner's cell timeout ends the run with an error."""
    from nbclient.exceptions import CellTimeoutError
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import time\ntime.sleep(60)")]
    nbformat.write(nb, tmp_path / "stuck.ipynb")
    with pytest.raises(CellTimeoutError, match="timed out"):
        runner.execute(tmp_path / "stuck.ipynb", tmp_path / "out.ipynb", {}, timeout=3)


def test_data_root_option_is_resolved_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FPLAB_DATA", raising=False)
    calls = []
    monkeypatch.setattr(cli, "run", lambda args: calls.append(dict(__import__("os").environ)))
    cli.main(["run", "--data-root", "rel/data", "--only", "01"])
    assert calls[0]["FPLAB_DATA"] == str((tmp_path / "rel" / "data").resolve())


def test_widget_state_is_dropped_from_executed_notebooks(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"x": 1}}}
    cell = nbformat.v4.new_code_cell("bar")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
                        runner.WIDGET_VIEW: {"model_id": "abc"}, "text/plain": "bar 3/3"}),
                    nbformat.v4.new_output("stream", text="kept\n")]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "n.ipynb")
    assert runner.drop_widget_state(tmp_path / "n.ipynb") == 1
    out = nbformat.read(tmp_path / "n.ipynb", as_version=4)
    assert "widgets" not in out.metadata
    assert [o.output_type for o in out.cells[0].outputs] == ["stream"]
