"""Errors fplab raises, and the one helper that words a bad-choice error."""

from __future__ import annotations

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
