"""``python -m fplab.timings FILE``: the table of time per step that ``.ci/run`` prints at its end.

``FILE`` holds one JSON object per line: ``{"step": ..., "seconds": ...}`` written by ``.ci/run``,
and ``{"test": nodeid, "seconds": ...}`` written by ``pytest tests`` (``tests/conftest.py``) when
``FPLAB_TIMINGS`` names the file. Tests are grouped: unit tests, each notebook under papermill,
the book build, the browser test; the nbval pass is the rest of ``make test``.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def group(nodeid: str) -> str:
    path, _, name = nodeid.partition("::")
    if path.startswith("notebooks/"):
        return f"nbval {path.split('/')[-1]}"
    if "test_notebook_executes_with_papermill" in name:
        return f"papermill {name.split('[')[-1].rstrip(']')}"
    if "test_book_builds" in name:
        return "book build"
    if path.endswith("test_site.py"):
        return "browser test of the site"
    return "unit tests"


def table(lines) -> list[tuple[str, float]]:
    steps, tests = [], defaultdict(float)
    for line in lines:
        if line.strip():
            record = json.loads(line)
            if "step" in record:
                steps.append((record["step"], float(record["seconds"])))
            else:
                tests[group(record["test"])] += float(record["seconds"])
    rows = steps + sorted(tests.items())
    total = dict(steps).get("make test")
    if total is not None and tests:  # the nbval pass runs outside tests/ (no per-test records)
        rows.append(("nbval of the committed notebooks + overhead (rest of make test)",
                     max(total - sum(tests.values()), 0.0)))
    return rows


def main(path: str) -> None:
    with open(path) as f:
        rows = table(f)
    width = max([len(name) for name, _ in rows] + [4])
    print(f"\n{'step'.ljust(width)}  seconds")
    for name, seconds in rows:
        print(f"{name.ljust(width)}  {seconds:7.0f}")


if __name__ == "__main__":
    main(sys.argv[1])
