"""Training is a function of its seed (dropout included), and the portable-numerics switch
(fplab.numerics) is all or nothing and part of every cache key."""

import subprocess
import sys

import torch

from fplab.data import Data
from fplab.models import build_model
from fplab.numerics import PORTABLE_ENV
from fplab.store import compute_context
from fplab.train import train


def _trained(global_seed: int) -> list[torch.Tensor]:
    torch.manual_seed(global_seed)  # what ran before in the kernel: a cache hit or a training
    model = build_model("speech_cnn_wide", (1, 32, 32), 10, seed=0)  # has dropout
    g = torch.Generator().manual_seed(0)
    data = Data(torch.rand(64, 1, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g))
    torch.manual_seed(global_seed)
    train(model, data, epochs=1, batch_size=16, seed=3, progress=False)
    return [p.detach().clone() for p in model.parameters()]


def test_dropout_follows_the_seed_not_the_global_generator():
    a, b = _trained(1), _trained(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_training_leaves_the_callers_generator_as_it_was():
    model = build_model("speech_cnn_wide", (1, 32, 32), 10, seed=0)
    data = Data(torch.zeros(16, 1, 32, 32), torch.zeros(16, dtype=torch.long))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    train(model, data, epochs=1, batch_size=8, seed=0, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_a_half_portable_environment_is_refused_with_the_missing_settings():
    env = {"FPLAB_PORTABLE": "1", "PATH": ""}
    run = subprocess.run([sys.executable, "-c", "import fplab"], env=env, capture_output=True,
                         text=True)
    assert run.returncode != 0
    assert "ATEN_CPU_CAPABILITY" in run.stderr and "MKL_CBWR" in run.stderr


def test_portable_numerics_switch_onednn_off_and_change_the_cache_key():
    code = ("import fplab, torch, json; from fplab.store import compute_context; "
            "print(json.dumps([torch.backends.mkldnn.enabled, compute_context()]))")
    run = subprocess.run([sys.executable, "-c", code], env={**PORTABLE_ENV, "PATH": ""},
                         capture_output=True, text=True, check=True)
    import json
    onednn, context = json.loads(run.stdout)
    assert onednn is False and context["onednn"] is False and context["mkl_cbwr"] == "AVX2"
    assert context != compute_context() or not torch.backends.mkldnn.enabled


def test_the_makefile_runs_the_test_suite_with_every_portable_setting():
    from pathlib import Path
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    serial = next(line for line in makefile.splitlines() if line.startswith("SERIAL :="))
    assert all(f"{k}={v}" in serial.split() for k, v in PORTABLE_ENV.items()), serial


def test_a_zoo_load_leaves_the_global_generators_alike_trained_or_loaded(cache):
    """A notebook draws the same random numbers after zoo.load on a cold and a warm cache."""
    import random

    import numpy as np

    from fplab import zoo
    recipe = zoo.Recipe("synthetic", "mnist_cnn", None, {"epochs": 1, "lr": 1e-2, "batch_size": 64})
    draws = []
    for _ in range(2):  # first trains, then loads
        torch.manual_seed(7), random.seed(7), np.random.seed(7)
        zoo.load(recipe)
        draws.append((torch.rand(2).tolist(), random.random(), float(np.random.rand())))
    assert draws[0] == draws[1]


def test_processor_families_join_intel_avx2_machines_and_keep_others_apart():
    """Intel processors with AVX2 share MKL's reproducible branch (one family, whatever the model
    name); any other processor, or an Intel one without AVX2, is its own family."""
    from fplab.numerics import INTEL_AVX2, family, machine
    xeons = ["GenuineIntel Intel(R) Xeon(R) Processor @ 2.80GHz avx512",
             "GenuineIntel Intel(R) Xeon(R) Processor avx512", "GenuineIntel Intel(R) Core(TM) i7 avx2"]
    assert {family(m) for m in xeons} == {INTEL_AVX2}
    for other in ("AuthenticAMD AMD EPYC avx512", "GenuineIntel Intel(R) Atom(TM) other", "x86_64"):
        assert family(other) == other
    assert family() == family(machine())
