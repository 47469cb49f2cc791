"""Portable CPU numerics: the same trained weights on any x86-64 machine (``FPLAB_PORTABLE=1``).

Torch's CPU kernels are chosen for the processor they run on: ATen's vectorised kernels by its
instruction set (AVX2 or AVX-512), oneDNN's convolutions by instruction set and cache sizes,
MKL's matrix products by processor. Each choice sums in a different order, so the same seed
trains different weights on two machines (measured here: the speech BadNet's clean accuracy /
attack success 98.3 / 89.0% on one machine, 97.3 / 84.7% on another), and the committed
notebook outputs that nbval compares would only hold on the machine that wrote them.

With the variables of :data:`PORTABLE_ENV` set before Python starts (the Makefile's ``make
test`` and ``make refresh`` do it), ATen uses its AVX2 kernels everywhere, MKL its
conditional-numerical-reproducibility AVX2 branch (``MKL_CBWR``; Intel documents it for Intel
CPUs, other CPUs get MKL's fixed AUTO branch), and fplab switches oneDNN off on import, so
convolutions run through ATen and MKL. Slower (about 1.4x on a small CNN here), so
it is for the test suite and the committed outputs; a student's run does not need it.
"""

from __future__ import annotations

import os

#: The environment of a portable run (set before torch is imported: ATen and MKL read it once).
PORTABLE_ENV = {"FPLAB_PORTABLE": "1", "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}


def portable_requested() -> bool:
    return os.environ.get("FPLAB_PORTABLE", "") == "1"


def apply() -> None:
    """Switch oneDNN off when ``FPLAB_PORTABLE=1``; refuse a half-portable environment."""
    if not portable_requested():
        return
    missing = {k: v for k, v in PORTABLE_ENV.items() if os.environ.get(k) != v}
    if missing:
        settings = " ".join(f"{k}={v}" for k, v in PORTABLE_ENV.items())
        raise RuntimeError(f"FPLAB_PORTABLE=1 needs {settings} in the environment before Python "
                           f"starts (missing or different: {sorted(missing)})")
    import torch
    torch.backends.mkldnn.enabled = False


def context() -> dict:
    """What of the numerics setting changes trained weights (part of every cache key)."""
    import torch
    out = {"cpu_kernels": torch.backends.cpu.get_cpu_capability(),
           "onednn": bool(torch.backends.mkldnn.enabled)}
    if os.environ.get("MKL_CBWR"):
        out["mkl_cbwr"] = os.environ["MKL_CBWR"]
    return out


def machine() -> str:
    """The processor, as the weights it trains depend on it even in a portable run (recorded in
    every zoo manifest, not in the cache key). Measured: the speech BadNet shipped from one machine
    (98.0% clean / 90.7% attack success) retrains to 97.7 / 86.0% on an AVX-512 Xeon, same
    recipe, same portable settings (MKL reports its AVX2 reproducibility branch on both)."""
    import platform
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    flags = info.get("flags", "").split()
    isa = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other"
    return " ".join(x for x in (info.get("vendor_id"), info.get("model name"), isa) if x)


#: The processor family whose portable runs train bit-identical weights: Intel processors with
#: AVX2 share MKL's conditional-numerical-reproducibility AVX2 branch (Intel documents the same
#: results on every Intel CPU supporting AVX2) and ATen's AVX2 kernels.
INTEL_AVX2 = "GenuineIntel, avx2 or newer (MKL's reproducible AVX2 branch)"


def family(machine_name: str | None = None) -> str:
    """The family of processors that train the same weights as ``machine_name`` (a
    :func:`machine` string, as zoo manifests record it; default: this one) in a portable run.

    Every Intel processor with AVX2 is one family, :data:`INTEL_AVX2` (measured: chapter 5's
    WaNet model, trained on a "Xeon Processor @ 2.80GHz", retrained bit-identically on another
    Xeon model). Any other processor is a family of its own: MKL gives non-Intel processors its
    AUTO branch, which chooses by processor (measured: chapter 7's defense-in-the-loop model,
    trained on an AMD EPYC, retrained on an Intel Xeon to 96.2% clean accuracy and 97.0% attack
    success instead of 92.7% and 100%). ``MKL_CBWR=COMPATIBLE`` would make every x86-64 processor one family, at about half
    the matrix-product speed (measured here: 18 vs 37 GFLOP/s on one thread); fplab does not
    use it, and every shipped model would have to be retrained with it.
    """
    name = machine() if machine_name is None else machine_name
    words = name.split()
    if len(words) > 1 and words[0] == "GenuineIntel" and words[-1] in ("avx2", "avx512"):
        return INTEL_AVX2
    return name
