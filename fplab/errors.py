"""Errors fplab raises, and the one helper that words a bad-choice error."""

from __future__ import annotations

import math
from numbers import Real
from typing import Iterable


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not under the data root and could not be downloaded."""


class IntegrityError(RuntimeError):
    """A file's SHA-256 does not match the one recorded for it (tampered or truncated)."""


def check_choice(param: str, value, allowed: Iterable) -> None:
    """Raise ``ValueError`` naming ``param`` and the allowed values if ``value`` is not one."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{param}={value!r} is not supported; allowed values: "
                         + ", ".join(repr(a) for a in allowed))


def check_range(param: str, value: float, low: float, high: float) -> None:
    """Raise ``ValueError`` naming ``param`` if ``value`` is outside ``[low, high]``."""
    if not (low <= value <= high):
        raise ValueError(f"{param}={value!r} is outside the allowed range [{low}, {high}]")


def check_integer(param: str, value, low: int, high: int | None = None) -> int:
    """``value`` as an ``int``; ``TypeError`` / ``ValueError`` naming ``param`` and the allowed
    range unless it is a whole number in ``[low, high]`` (``high=None``: no upper bound)."""
    allowed = f"[{low}, {high}]" if high is not None else f">= {low}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{param}={value!r} must be a whole number {allowed}")
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"{param}={value!r} must be a whole number {allowed}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{param}={value!r} is outside the allowed range {allowed}")
    return int(value)


def check_positive(param: str, value) -> None:
    """Raise ``ValueError`` naming ``param`` unless ``value`` is a number > 0."""
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise ValueError(f"{param}={value!r} must be a number > 0")
