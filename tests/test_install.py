"""The set-up step of ``make book`` / ``make test`` (fplab.install): an existing venv whose torch
and torchvision cannot load each other is detected and repaired, with the machine's pip
preferences switched off; when the repair does not help, one message names the fix."""

import os
import stat
from pathlib import Path

import pytest

from fplab import install

ROOT = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/bin/sh
# A stand-in for a venv's python: torch/torchvision "work" once a repair has installed them.
log="{log}"
if [ "$1" = "-c" ]; then
  if [ -e "{fixed}" ]; then echo "2.13.0 0.28.0"; exit 0; fi
  echo "RuntimeError: operator torchvision::nms does not exist" >&2; exit 1
fi
echo "$* | find_links=${{PIP_FIND_LINKS:-unset}} config=${{PIP_CONFIG_FILE:-unset}}" >> "$log"
case "$*" in *"pip install"*torch==*) [ "{fixable}" = yes ] && touch "{fixed}";; esac
exit 0
"""


def fake_venv(tmp_path, fixable=True, works=False):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log, fixed = tmp_path / "pip.log", tmp_path / "fixed"
    if works:
        fixed.touch()
    py = venv / "bin" / "python"
    py.write_text(FAKE_PYTHON.format(log=log, fixed=fixed, fixable="yes" if fixable else "no"))
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    (venv / install.STAMP).write_text(install.requirements_hash(ROOT) + "\n")  # installed already
    return venv, log


def test_pins_come_from_constraints():
    assert install.pinned("torch", ROOT / "constraints.txt") == "2.13.0"
    assert install.pinned("torchvision", ROOT / "constraints.txt") == "0.28.0"
    assert install.pinned("no-such-package", ROOT / "constraints.txt") is None


def test_broken_pair_is_repaired_without_the_machine_pip_preferences(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/local-wheels")
    venv, log = fake_venv(tmp_path)
    install.ensure(venv, root=ROOT)
    calls = log.read_text().splitlines()
    assert len(calls) == 2, calls
    assert calls[0].startswith("-m pip uninstall -y torch torchvision")
    assert "install -q -c" in calls[1] and "torch==2.13.0 torchvision==0.28.0" in calls[1]
    for call in calls:
        assert f"find_links=unset config={os.devnull}" in call
    assert os.environ["PIP_FIND_LINKS"] == "/opt/local-wheels"  # the user's own env is untouched


def test_working_pair_is_left_alone(tmp_path):
    venv, log = fake_venv(tmp_path, works=True)
    install.ensure(venv, root=ROOT)
    assert not log.exists()


def test_unrepairable_pair_stops_with_the_command_that_fixes_it(tmp_path):
    venv, _ = fake_venv(tmp_path, fixable=False)
    with pytest.raises(SystemExit) as stop:
        install.ensure(venv, root=ROOT)
    message = str(stop.value)
    assert "operator torchvision::nms does not exist" in message
    assert f"rm -rf {venv} && make" in message


def test_changed_requirements_reinstall(tmp_path):
    venv, log = fake_venv(tmp_path, works=True)
    (venv / install.STAMP).write_text("stale\n")
    install.ensure(venv, root=ROOT)
    calls = log.read_text().splitlines()
    assert any("-e" in c and "[course]" in c for c in calls), calls
    assert (venv / install.STAMP).read_text().strip() == install.requirements_hash(ROOT)
