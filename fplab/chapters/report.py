"""How every chapter shows its results: HTML tables in percent with one decimal, and its
expectations, which the test suite reads back from the executed notebook and asserts.

A chapter's expectations are the papers' claims it sets out to reproduce, each checked against
its own measurement. :func:`show_expectations` displays them and attaches them, machine-readable,
to the cell's output (``metadata["fplab"]["expectations"]``): ``tests/test_notebooks.py`` fails
when one that held stops holding, or when one recorded as not reproduced starts to hold.
"""

from __future__ import annotations

import math

import pandas as pd

EXPECTATION_KEYS = ("expectation", "paper", "ours", "holds")


def percent(value, decimals: int = 1) -> str:
    """``0.9734`` -> ``"97.3%"``; ``None`` / NaN -> ``"-"`` (where there is no number)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.{decimals}f}%"


def formatted(frame: pd.DataFrame, percent_columns=(), count_columns=()) -> pd.DataFrame:
    """A copy of ``frame`` as strings: fractions in ``percent_columns`` as percentages with one
    decimal, ``count_columns`` as integers, missing values as ``"-"``."""
    out = frame.copy().astype(object)
    for column in out.columns:
        if column in percent_columns:
            out[column] = [percent(v) for v in frame[column]]
        elif column in count_columns:
            out[column] = ["-" if pd.isna(v) else f"{int(round(v))}" for v in frame[column]]
        else:
            out[column] = ["-" if v is None or (isinstance(v, float) and math.isnan(v)) else v
                           for v in frame[column]]
    return out


class Table:
    """A table that shows as HTML in Jupyter and on the site, and as aligned text elsewhere."""

    def __init__(self, frame: pd.DataFrame, caption: str | None = None):
        self.frame, self.caption = frame, caption

    def _repr_html_(self) -> str:
        html = self.frame.to_html(classes="fplab-table", border=0, escape=True)
        if self.caption:
            html = html.replace(">", f"><caption>{self.caption}</caption>", 1)
        return html

    def __repr__(self) -> str:
        text = self.frame.to_string()
        return f"{self.caption}\n{text}" if self.caption else text


def table(frame: pd.DataFrame, percent_columns=(), count_columns=(), caption=None) -> Table:
    """:func:`formatted` ``frame`` as a :class:`Table` (the last expression of a cell shows it)."""
    return Table(formatted(frame, percent_columns, count_columns), caption)


def expectation(claim: str, holds: bool, ours: str, paper: str = "-") -> dict:
    """One row for :func:`show_expectations`."""
    return {"expectation": claim, "paper": paper, "ours": ours, "holds": bool(holds)}


def show_expectations(rows: list[dict]) -> pd.DataFrame:
    """Display the chapter's expectations with a verdict in words, attach them to the output
    for the tests, and return them as a DataFrame."""
    from IPython.display import display

    for row in rows:
        missing = [k for k in EXPECTATION_KEYS if k not in row]
        if missing:
            raise ValueError(f"an expectation row needs the keys {list(EXPECTATION_KEYS)}; "
                             f"{row!r} lacks {missing}")
    frame = pd.DataFrame(rows).set_index("expectation")
    shown = frame.assign(verdict=["reproduced" if h else "not reproduced" for h in frame["holds"]])
    held = int(frame["holds"].sum())
    caption = f"{held} of {len(frame)} expectations reproduced at this scale"
    display(Table(shown.drop(columns="holds"), caption),
            metadata={"fplab": {"expectations": [dict(r) for r in rows]}})
    return frame
