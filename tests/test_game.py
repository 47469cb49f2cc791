"""Unit tests of the zero-sum game module (utility matrix, best responses, mixed strategies)."""

import numpy as np
import pandas as pd
import pytest

from fplab.game import best_responses, solve_game, utility_matrix

RPS = [[0, -1, 1], [1, 0, -1], [-1, 1, 0]]


def test_rock_paper_scissors_is_uniform_with_value_zero():
    game = utility_matrix(RPS, ["rock", "paper", "scissors"], ["rock", "paper", "scissors"])
    sol = solve_game(game)
    assert np.allclose(sol.defender.to_numpy(), 1 / 3, atol=1e-8)
    assert np.allclose(sol.attacker.to_numpy(), 1 / 3, atol=1e-8)
    assert abs(sol.value) < 1e-9
    assert best_responses(game)["saddle_points"] == []


def test_saddle_point_is_a_pure_strategy():
    U = [[3, 1, 4], [2, 0, 1], [5, 2, 6]]        # row 2, column 1: min of its row, max of its column
    game = utility_matrix(U, ["a", "b", "c"], ["x", "y", "z"])
    sol = solve_game(game)
    assert sol.defender["c"] == pytest.approx(1) and sol.attacker["y"] == pytest.approx(1)
    assert sol.value == pytest.approx(2)
    br = best_responses(game)
    assert br["saddle_points"] == [("c", "y")]
    assert br["defender"]["x"] == ["c"] and br["attacker"]["a"] == ["y"]


def test_matching_pennies_biased():
    # [[2, -1], [-1, 1]]: p = (2/5, 3/5), value 1/5 (solve p*2 - (1-p) = -p + (1-p)).
    sol = solve_game(np.array([[2.0, -1.0], [-1.0, 1.0]]))
    assert sol.defender.to_numpy() == pytest.approx([0.4, 0.6])
    assert sol.attacker.to_numpy() == pytest.approx([0.4, 0.6])
    assert sol.value == pytest.approx(0.2)


def test_reproducible():
    rng = np.random.default_rng(0)
    U = rng.uniform(-1, 1, (5, 5))
    a, b = solve_game(U), solve_game(U.copy())
    assert a.defender.equals(b.defender) and a.value == b.value


def test_utility_from_results():
    results = {("none", "badnets"): {"clean_acc": 0.9, "asr": 1.0},
               ("prune", "badnets"): {"clean_acc": 0.85, "asr": 0.1}}
    game = utility_matrix(results, ["none", "prune"], ["badnets"])
    assert game.loc["prune", "badnets"] == pytest.approx(0.75)
    assert game.loc["none", "badnets"] == pytest.approx(-0.1)
    assert isinstance(game, pd.DataFrame)


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="defenders is empty"):
        utility_matrix([[1]], [], ["a"])
    with pytest.raises(ValueError, match="attackers is empty"):
        utility_matrix([[1]], ["d"], [])
    with pytest.raises(ValueError, match="does not match the strategy lists"):
        utility_matrix([[1, 2]], ["d1", "d2"], ["a1", "a2"])
    with pytest.raises(ValueError, match="values lacks"):
        utility_matrix({("d", "a"): {"clean_acc": 1, "asr": 0}}, ["d"], ["a", "b"])
    with pytest.raises(ValueError, match="repeated"):
        utility_matrix([[1, 2]], ["d"], ["a", "a"])
    with pytest.raises(ValueError, match="finite"):
        utility_matrix([[np.nan]], ["d"], ["a"])
    with pytest.raises(ValueError, match="2-dimensional"):
        solve_game([1, 2, 3])
