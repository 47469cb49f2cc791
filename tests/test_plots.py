"""Figures and the kernel-free explorer (fplab.plots)."""

import pytest

from fplab.plots import slider_explorer


def test_slider_explorer_draws_every_frame():
    seen = []

    def draw(fig, value):
        seen.append(value)
        fig.add_subplot().plot([0, 1], [0, value])

    html = slider_explorer(draw, [1, 2, 3], "slope").data
    assert 'type="range"' in html and html.count("data:image/png;base64") == 3
    assert sorted(set(seen)) == [1, 2, 3]
    with pytest.raises(ValueError, match="values"):
        slider_explorer(draw, [], "slope")


def test_pruning_frames_show_one_frame_per_fraction_from_the_curve():
    import pandas as pd
    import torch
    from fplab.chapters.ch02_pruning import pruning_frames
    from fplab.defenses.pruning import PruningCurve
    n = 8
    clean = torch.linspace(0, 1, n)
    table = pd.DataFrame({"pruned": range(n + 1), "fraction": [k / n for k in range(n + 1)],
                          "val_acc": 0.9, "clean_acc": 0.9, "asr": [1 - k / n for k in range(n + 1)]})
    curve = PruningCurve(table, torch.argsort(clean), clean, "conv", stop=2, max_drop=0.04)
    html = pruning_frames(curve, clean, clean.flip(0), title="toy", fractions=(0.0, 0.5, 1.0)).data
    assert html.count("data:image/png;base64") == 3
    assert 'type="range"' in html


def test_budget_frames_show_one_frame_per_epoch_from_the_budget_scores():
    from types import SimpleNamespace
    from fplab.chapters.ch04_fine_pruning import ATTACKERS, budget_frames
    from fplab.defenses.finetune import Budget
    cases = [SimpleNamespace(name="face"), SimpleNamespace(name="speech")]
    scores = {(lr, e): (0.8 + e / 100 + lr, 0.5) for lr in (1e-4, 1e-3) for e in (1, 2, 3)}
    budget = {"fine-tune": Budget(1e-3, 3, scores), "fine-prune": Budget(1e-4, 2, scores)}
    results = {(c.name, kind): {"budget": budget} for c in cases for kind in ATTACKERS}
    html = budget_frames(cases, results).data
    assert html.count("data:image/png;base64") == 3
    assert 'type="range"' in html
    with pytest.raises(ValueError, match="select"):
        budget_frames(cases, {key: {} for key in results})


def test_threshold_frames_show_one_frame_per_threshold_of_the_table():
    import pandas as pd
    from fplab.chapters.ch05_anp import threshold_frames
    masks = [0.05, 0.15, 0.5, 0.9, 1.0]
    table = pd.DataFrame({"threshold": [0.0, 0.1, 0.2, 0.3], "pruned": [0, 1, 2, 2],
                          "clean_acc": [0.9, 0.9, 0.85, 0.85], "asr": [1.0, 0.6, 0.1, 0.1]})
    html = threshold_frames({"BadNets": table}, masks, threshold=0.2).data
    assert html.count("data:image/png;base64") == 4
    assert 'type="range"' in html
    two = threshold_frames({"BadNets": table, "Blend": table.iloc[:2]}).data
    assert two.count("data:image/png;base64") == 4
    assert threshold_frames(table).data.count("data:image/png;base64") == 4


def test_arms_race_frames_show_one_frame_per_attacker_column():
    from fplab.chapters.ch07_adaptive_backdoors import arms_race_frames
    from fplab.game import utility_matrix
    U = utility_matrix([[0.5, -0.2, 0.1], [0.1, 0.4, -0.3]], ["none", "CLP"],
                       ["baseline", "ANP-aware", "Adap-Blend"])
    html = arms_race_frames(U).data
    assert html.count("data:image/png;base64") == 3
    assert 'type="range"' in html


def test_trigger_frames_move_the_trigger_along_the_success_map():
    import torch
    from torch import nn
    from fplab.chapters.ch01_badnets import trigger_frames
    from fplab.data import Data
    from fplab.poison import Attack
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).eval()
    data = Data(torch.rand(8, 1, 28, 28), torch.zeros(8, dtype=torch.long))
    attack = Attack("checkerboard", "all_to_one", 7, 0.1, trigger_options={"size": 4})
    rows, cols = [0, 12, 24], [0, 12, 24]
    html = trigger_frames(model, data, attack, rows, cols, torch.rand(3, 3)).data
    assert html.count("data:image/png;base64") == 3 and 'type="range"' in html


def test_replicate_figure_plots_each_seeds_attack_success_per_iteration():
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    from fplab.chapters.ch05_anp import plot_replicates
    index = pd.MultiIndex.from_product([[0, 1, 2], [100, 500, 2000]], names=["seed", "iterations"])
    reps = pd.DataFrame({"ASR": np.linspace(0, 0.8, 9), "rule ASR": np.linspace(1, 0.2, 9)},
                        index=index)
    fig = plot_replicates(reps, 0.2)
    left, right = fig.axes[:2]
    for ax, column in ((left, "ASR"), (right, "rule ASR")):
        lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
        assert [line.get_label() for line in lines] == ["seed 0", "seed 1", "seed 2"]
        for seed, line in enumerate(lines):
            assert list(line.get_xdata()) == [100, 500, 2000]
            assert np.allclose(line.get_ydata(), 100 * reps.loc[seed, column].to_numpy())
        assert [t.get_text() for t in ax.get_xticklabels()] == ["100", "500", "2000"]
    assert "0.2" in left.get_title()
    plt.close(fig)
