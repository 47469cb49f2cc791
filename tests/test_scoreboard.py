"""The scoreboard page is generated from the notebooks' own expectation outputs."""

import nbformat
import pytest

from fplab.scoreboard import MARKER, scoreboard_markdown, write_scoreboard


def notebook_with(path, rows):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show_expectations(rows)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/plain": "table"},
                                           metadata={"fplab": {"expectations": rows}})]
    nb.cells = [nbformat.v4.new_markdown_cell("# 9. A chapter"), cell]
    nbformat.write(nb, path)
    return path


def test_scoreboard_lists_every_claim_with_its_verdict(tmp_path):
    rows = [{"expectation": "ASR < 5%", "paper": "0.5%", "ours": "3.1%", "holds": True},
            {"expectation": "clean loss <= 2 | pts", "paper": "0.1", "ours": "7.0", "holds": False}]
    md = scoreboard_markdown([notebook_with(tmp_path / "09_x.ipynb", rows)])
    assert md.startswith("**1 of 2** claims reproduced")
    assert "| {doc}`9 <../notebooks/09_x>` | ASR &lt; 5% | 0.5% | 3.1% | reproduced |" in md
    assert "clean loss &lt;= 2 \\| pts" in md and "**not reproduced**" in md
    page = tmp_path / "scoreboard.md"
    page.write_text(f"# S\n\n{MARKER}\n")
    write_scoreboard(page, [tmp_path / "09_x.ipynb"])
    assert MARKER not in page.read_text() and "3.1%" in page.read_text()
    page.write_text("# no marker\n")
    with pytest.raises(ValueError, match="marks where the table goes"):
        write_scoreboard(page, [tmp_path / "09_x.ipynb"])
