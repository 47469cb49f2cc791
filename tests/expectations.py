"""Each chapter's expectations (the papers' claims it sets out to reproduce), read back from a
notebook's outputs (:func:`fplab.chapters.report.show_expectations` attaches them), and the record
of those the chapter states as NOT reproduced at our scale.

A claim that held and stops holding fails CI; so does one recorded here as not reproduced that
starts to hold (then the chapter's text, and this record, must change with it).
"""

#: notebook stem -> claims the notebook shows as not reproduced (its text says why, with numbers)
NOT_REPRODUCED: dict[str, set[str]] = {
    "01_badnets": set(),
    "02_pruning": {
        'pruning (4% rule) brings baseline success < 20% at < 5 pts clean loss on >= 2 of 3 cases',
    },
    "03_pruning_aware_attack": set(),
    "04_fine_pruning": {
        'fine-pruning brings every targeted backdoor < 5% with <= 2 pts clean loss',
    },
    "05_anp": {
        'ANP at threshold 0.2 brings BadNets under 5% ASR with <= 3 points clean loss',
        'ANP at threshold 0.2 brings Blend under 5% ASR with <= 3 points clean loss',
        'ANP at threshold 0.2 brings SIG under 5% ASR with <= 3 points clean loss',
        'ANP beats fine-pruning and fine-tuning (lr 0.01) on average ASR drop',
        'average ASR drop of ANP over the implanted attacks >= 85 points',
        'insensitive to the number of clean images (50 to 500: ASR after ANP within 5 points, and under 6% as in the paper)',
        'deeper network (resnet18_w16, 3 seeds): ANP at threshold 0.2 after 2000 iterations brings BadNets under 5% ASR with <= 3 points clean loss (mean over seeds)',
    },
    "06_adaptive_attacks": {
        'k-WTA falls to BPDA / smoothed gradients (< 10%)',
    },
    "07_adaptive_backdoors": {
        'ANP-aware raises ASR after ANP by >= 30 points at <= 3 points clean cost',
        'defense-in-the-loop raises ASR after ANP by >= 30 points at <= 3 points clean cost',
        'Adap-Blend raises ASR after fine-pruning by >= 30 points at <= 3 points clean cost',
        'CLP removes the baseline patch backdoor (< 10%) at <= 3 points clean loss',
    },
}


def expectations_of(nb) -> list[dict]:
    """The expectation rows every ``show_expectations`` output of notebook ``nb`` carries."""
    rows = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            rows += output.get("metadata", {}).get("fplab", {}).get("expectations", [])
    return rows


def check(stem: str, nb) -> list[str]:
    """What is wrong with notebook ``stem``'s expectations (empty: all as recorded)."""
    rows = expectations_of(nb)
    if not rows:
        return [f"{stem}: no expectations table (fplab.chapters.report.show_expectations)"]
    known = NOT_REPRODUCED.get(stem, set())
    problems = []
    for row in rows:
        claim = row["expectation"]
        if not row["holds"] and claim not in known:
            problems.append(f"{stem}: expectation no longer holds: {claim!r} (ours: {row['ours']})")
        if row["holds"] and claim in known:
            problems.append(f"{stem}: {claim!r} is recorded as not reproduced but now holds "
                            f"(ours: {row['ours']}): update the chapter's text and this record")
    stale = known - {row["expectation"] for row in rows}
    problems += [f"{stem}: recorded claim {c!r} is not in the notebook" for c in sorted(stale)]
    return problems
