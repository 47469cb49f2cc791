"""The attacker-defender game of backdoor defenses, as a two-player zero-sum matrix game.

Liu, Dolan-Gavitt and Garg (Fine-Pruning, 2018, Table 2) score each (defense, attack) pair by the
*defender's utility*

    U[d, a] = clean accuracy - attack success     (of attacker a's model after defense d),

which the defender maximises and the attacker minimises (a zero-sum game: the attacker's
utility is ``-U``). Rows are the defender's strategies, columns the attacker's.

- A *best response* to a column is the row with the largest ``U`` in it (the defender's
  answer to a known attack); to a row, the column with the smallest ``U`` (the attacker's answer
  to a known defense). A cell that is both is a pure *saddle point*.
- When neither side can be sure what the other plays, each randomises. By von Neumann's minimax
  theorem the game has a value ``v`` and optimal mixed strategies ``p`` (defender), ``q``
  (attacker) with

      v = max_p min_a sum_d p_d U[d, a] = min_q max_d sum_a q_a U[d, a].

  The defender's side is the linear programme

      maximise v  subject to  sum_d p_d U[d, a] >= v for every column a,  sum_d p_d = 1,  p >= 0,

  and the attacker's side is its dual; :func:`solve_game` solves both with
  ``scipy.optimize.linprog`` (HiGHS, deterministic: same matrix, same strategy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TOLERANCE = 1e-9


def _names(param: str, names) -> list[str]:
    names = [str(n) for n in names]
    if not names:
        raise ValueError(f"{param} is empty: a game needs at least one strategy per player")
    if len(set(names)) != len(names):
        raise ValueError(f"{param}={names!r} has repeated names")
    return names


def utility_matrix(values, defenders, attackers) -> pd.DataFrame:
    """The defender's utility as a DataFrame (rows ``defenders``, columns ``attackers``).

    ``values`` is either a matrix (nested lists / array) of shape ``(len(defenders),
    len(attackers))``, or a mapping ``{(defender, attacker): {"clean_acc": ..., "asr": ...}}``
    from which ``U = clean_acc - asr`` is computed (Fine-Pruning, Table 2)."""
    defenders, attackers = _names("defenders", defenders), _names("attackers", attackers)
    if isinstance(values, dict):
        missing = [(d, a) for d in defenders for a in attackers if (d, a) not in values]
        if missing:
            raise ValueError(f"values lacks the cells {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        matrix = [[values[d, a]["clean_acc"] - values[d, a]["asr"] for a in attackers]
                  for d in defenders]
    else:
        matrix = values
    array = np.asarray(matrix, dtype=float)
    if array.shape != (len(defenders), len(attackers)):
        raise ValueError(f"values has shape {array.shape}, which does not match the strategy lists: "
                         f"{len(defenders)} defenders x {len(attackers)} attackers")
    if not np.isfinite(array).all():
        raise ValueError("values must be finite numbers")
    return pd.DataFrame(array, index=pd.Index(defenders, name="defender"),
                        columns=pd.Index(attackers, name="attacker"))


def _as_frame(matrix) -> pd.DataFrame:
    if not isinstance(matrix, pd.DataFrame):
        array = np.asarray(matrix, dtype=float)
        if array.ndim != 2:
            raise ValueError(f"matrix must be 2-dimensional; got shape {array.shape}")
        return utility_matrix(array, [f"d{i}" for i in range(array.shape[0])],
                              [f"a{j}" for j in range(array.shape[1])])
    return utility_matrix(matrix.to_numpy(), matrix.index, matrix.columns)


def best_responses(matrix) -> dict:
    """Each side's best responses: ``{"defender": {attacker: [best rows]}, "attacker": {defender:
    [best columns]}, "saddle_points": [(defender, attacker), ...]}`` (ties listed together)."""
    frame = _as_frame(matrix)
    U = frame.to_numpy()
    rows, cols = list(frame.index), list(frame.columns)
    defender = {cols[j]: [rows[i] for i in np.flatnonzero(U[:, j] >= U[:, j].max() - TOLERANCE)]
                for j in range(len(cols))}
    attacker = {rows[i]: [cols[j] for j in np.flatnonzero(U[i] <= U[i].min() + TOLERANCE)]
                for i in range(len(rows))}
    saddles = [(d, a) for a, ds in defender.items() for d in ds if a in attacker[d]]
    return {"defender": defender, "attacker": attacker, "saddle_points": saddles}


@dataclass
class GameSolution:
    """Optimal mixed strategies of both players and the value of the game."""

    defender: pd.Series      # probability of each defense (sums to 1)
    attacker: pd.Series      # probability of each attack (sums to 1)
    value: float             # the defender's guaranteed expected utility

    def support(self, side: str = "defender", minimum: float = 1e-6) -> pd.Series:
        """The strategies played with positive probability."""
        s = self.defender if side == "defender" else self.attacker
        return s[s > minimum]


def _maximin(U: np.ndarray) -> tuple[np.ndarray, float]:
    """``max_p min_j (p^T U)_j`` over the probability simplex: the row player's LP."""
    from scipy.optimize import linprog

    m, n = U.shape
    c = np.zeros(m + 1)
    c[-1] = -1.0                                     # maximise v
    A_ub = np.hstack([-U.T, np.ones((n, 1))])        # v - sum_i p_i U[i, j] <= 0
    A_eq = np.hstack([np.ones((1, m)), np.zeros((1, 1))])
    bounds = [(0, None)] * m + [(None, None)]
    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(n), A_eq=A_eq, b_eq=[1.0], bounds=bounds,
                  method="highs")
    if not res.success:  # pragma: no cover - a finite matrix game always has a solution
        raise RuntimeError(f"the linear programme failed: {res.message}")
    p = np.clip(res.x[:m], 0, None)
    return p / p.sum(), float(res.x[-1])


def solve_game(matrix) -> GameSolution:
    """Solve the zero-sum game with payoff ``matrix`` to the row player (the defender).

    The defender's optimal ``p`` maximises her worst-case expected utility (the LP in the module
    docstring); the attacker's optimal ``q`` minimises the defender's best-case utility, which is
    the same LP on ``-U^T``. Both give the value ``v`` (minimax theorem)."""
    frame = _as_frame(matrix)
    U = frame.to_numpy()
    p, v = _maximin(U)
    q, w = _maximin(-U.T)
    if abs(v + w) > 1e-6 * max(1.0, abs(v)):  # pragma: no cover - LP duality
        raise RuntimeError(f"the two programmes disagree on the value ({v} vs {-w})")
    return GameSolution(pd.Series(p, index=frame.index, name="probability"),
                        pd.Series(q, index=frame.columns, name="probability"), v)
