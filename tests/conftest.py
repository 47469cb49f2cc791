"""Shared fixtures: a tiny dataset that needs no files, and an isolated zoo cache."""

import pytest
import torch

from fplab.data import load_dataset


@pytest.fixture(scope="session")
def synthetic():
    return load_dataset("synthetic")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty FPLAB_CACHE for one test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("FPLAB_CACHE", str(folder))
    return folder


def flip_last_byte(path):
    """Tamper with a file: flip every bit of its last byte (a zip file often ends in a zero)."""
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_runtest_logreport(report):
    """With ``FPLAB_TIMINGS`` set (``.ci/run``), append each test's duration to that file."""
    import json
    import os
    path = os.environ.get("FPLAB_TIMINGS")
    if path and report.when == "call":
        with open(path, "a") as f:
            f.write(json.dumps({"test": report.nodeid, "seconds": round(report.duration, 2)}) + "\n")
