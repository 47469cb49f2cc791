"""The numbers nbval guards can fail CI: after the sanitizers of tests/nbval_sanitize.cfg (which
nbval applies to both sides before comparing), every number in every ``nbval-check-output``
cell's committed output still tells a one-point change apart, and guarded outputs print
percentages, not bare fractions such as 0.953 (which a "to the unit" comparison would flatten
to 0; a chosen threshold such as 0.70 is a setting, compared exactly)."""

import re
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import get_sanitize_patterns

from fplab.runner import notebook_paths

CFG = Path(__file__).with_name("nbval_sanitize.cfg")
NUMBER = re.compile(r"(?<![\w.])(\d+)(\.\d+)?(%?)")
FRACTION = re.compile(r"(?<![\w.])0\.\d{3,}(?!\d*%)")
NOTEBOOKS = notebook_paths()


def sanitize(text: str) -> str:
    """What nbval does to an output before comparing it (its own parser of the file)."""
    for regex, replace in get_sanitize_patterns(CFG.read_text()):
        text = re.sub(regex, replace, text)
    return text


def guarded_texts(path):
    """(cell index, text) of every text output of the notebook's guarded cells."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if "nbval-check-output" in cell.metadata.get("tags", []):
            for out in cell.get("outputs", []):
                if "text" in out:
                    yield i, out["text"]
                for mime, value in out.get("data", {}).items():
                    if mime in ("text/plain", "text/html"):
                        yield i, value


def one_point_more(match: re.Match) -> str:
    """The number, changed by one point: +0.01 for a fraction (0.953), else +1 (a percentage,
    with or without its % sign, or a count)."""
    whole, decimals, pct = match.group(1), match.group(2) or "", match.group(3)
    value = float(whole + decimals)
    step = 0.01 if (not pct and len(decimals) > 2 and value < 1) else 1
    return f"{value + step:.{max(len(decimals) - 1, 0)}f}{pct}"


def test_sanitizer_tells_a_one_point_change_apart():
    for text in ("clean 97.3% | ASR 0.5%", "| 12 | 97.9% |", "0.953", "holds on 2 of 3"):
        for m in NUMBER.finditer(text):
            changed = text[:m.start()] + one_point_more(m) + text[m.end():]
            assert sanitize(changed) != sanitize(text), (text, changed)
    assert sanitize("97.3%") == sanitize("97.4%")        # float noise in the last digit passes
    assert sanitize("took 12.5 s") == sanitize("took 13.1 s")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_guarded_number_can_fail(path):
    checked = 0
    for i, text in guarded_texts(path):
        clean = sanitize(text)
        fractions = FRACTION.findall(re.sub(r"<style.*?</style>", "", text, flags=re.S))
        assert not fractions, f"cell {i} prints bare fractions {fractions[:3]}: print percents"
        for m in list(NUMBER.finditer(text))[:400]:
            changed = text[:m.start()] + one_point_more(m) + text[m.end():]
            if sanitize(changed) == clean:
                # only numbers a sanitizer replaces on purpose (timings, addresses) may vanish
                assert re.search(r"TIME|ADDRESS", sanitize(text[max(0, m.start() - 3):m.end() + 12])), \
                    f"cell {i}: a one-point change of {m.group(0)!r} would pass nbval"
            checked += 1
    assert checked, "no guarded number"
