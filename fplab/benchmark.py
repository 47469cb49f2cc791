"""``python -m fplab benchmark``: what the course costs, printed, never asserted in tests.

- :func:`benchmark` runs every notebook three times, each in a fresh process (cold: an empty
  cache, everything computed but the shipped models, those of ``fplab/weights`` and of the
  results snapshot's ``zoo/``, which ``retrain-shipped`` retrains; warm: the same cache again;
  first run: an empty cache with the shipped results of ``fplab/results``, what ``make test``
  and a newcomer's single-threaded ``make book`` meet) and prints wall time and the kernel's
  peak memory;
- :func:`micro_benchmarks` times the chapters' hot loops: the whole pruning curve of a case study
  (chapter 2) and ANP's mask optimisation against :func:`reference_anp_masks`, a plain
  re-implementation of the original loop, on the same model, batch and thread count (chapter 5).

This module sits above the library and the chapters (it imports both); nothing imports it but the
command line (:mod:`fplab.cli`).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from . import zoo
from .chapters.casestudies import case_study
from .data import Data
from .defenses.anp import _channels, _check, anp_masks, clean_subset, neuron_layers, ANPResult
from .defenses.anp import channels_last as to_channels_last
from .models import build_model, copy_model
from .runner import BUILD, execute, notebook_paths
from .train import model_device


# ----------------------------------------------------------------------------- notebooks

def measure_child(path: str, parameters: str) -> None:
    """Run in a fresh process: execute one notebook, print seconds and the kernel's peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        seconds = execute(Path(path), Path(tmp) / "out.ipynb", json.loads(parameters))
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_rss_gib": peak_kib / 2**20}))


def benchmark(args) -> None:
    """Per notebook, cold (empty cache, shipped models, results computed), warm (same cache) and
    first run (empty cache, shipped models and results) wall time and peak memory."""
    import pandas as pd
    params = json.dumps({"profile": args.profile, "seed": args.seed})
    rows = []
    shared = tempfile.mkdtemp(prefix="fplab-bench-")
    try:
        for path in notebook_paths(args.only):
            # a fresh, empty cache per notebook (cold), then the same cache again (warm)
            cache = shared if args.shared_cache else tempfile.mkdtemp(prefix="fplab-bench-")
            first = tempfile.mkdtemp(prefix="fplab-bench-")
            for state, folder, extra in (("cold", cache, {"FPLAB_NO_SHIPPED_RESULTS": "1"}),
                                         ("warm", cache, {}), ("first run", first, {})):
                env = dict(os.environ, FPLAB_CACHE=folder, **extra)
                child = subprocess.run(
                    [sys.executable, "-m", "fplab", "_measure", str(path), params], env=env,
                    capture_output=True, text=True, check=True)
                figures = json.loads(child.stdout.strip().splitlines()[-1])
                rows.append({"notebook": path.name, "cache": state,
                             "wall time (s)": round(figures["seconds"], 1),
                             "peak RSS (GiB)": round(figures["peak_rss_gib"], 2)})
                print(rows[-1], flush=True)
            shutil.rmtree(first, ignore_errors=True)
            if cache != shared:
                shutil.rmtree(cache, ignore_errors=True)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    print("\nNotebooks (papermill, profile=%s):" % args.profile)
    print(pd.DataFrame(rows).to_string(index=False))
    for name, figures in micro_benchmarks():
        print(f"\n{name}:")
        for key, value in figures.items():
            print(f"  {key}: {value}")


def micro_benchmarks():
    """The chapters' own benchmarks: the pruning curve (chapter 2), the stopping rule on a
    researcher's CNN, ANP's throughput (chapter 5), PGD against ART (chapter 6), CLP (chapter 7),
    the book build."""
    from .chapters.ch06_adaptive_attacks import benchmark_pgd
    from .chapters.ch07_adaptive_backdoors import benchmark_clp
    yield "pruning curve (chapter 2)", benchmark_pruning_curve()
    yield "stopping rule on a non-fplab CNN (issue 15)", benchmark_stopping_rule()
    yield "ANP mask optimisation (chapter 5)", benchmark_anp()
    yield "PGD throughput, fplab vs the Adversarial Robustness Toolbox (chapter 6)", benchmark_pgd()
    yield "CLP, channel Lipschitzness pruning (chapter 7)", benchmark_clp()
    yield "book build from the committed notebooks", benchmark_book()


def benchmark_book() -> dict:
    """Seconds to build the site from the committed notebooks (target <= 30 s), and the largest
    chapter page with its images (target <= 3 MB)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fplab", "book", "--no-execute"], check=True,
                   capture_output=True)
    seconds = time.perf_counter() - start
    html = BUILD / "html"
    sizes = {}
    for page in (html / "notebooks").glob("*.html"):
        images = sum(p.stat().st_size for p in (html / "_images").glob("*")
                     if p.name in page.read_text())
        sizes[page.stem] = page.stat().st_size + images
    largest = max(sizes, key=sizes.get) if sizes else "-"
    return {"seconds": round(seconds, 1), "limit_seconds": 30, "largest page": largest,
            "largest page MB (with images)": round(sizes.get(largest, 0) / 2**20, 2),
            "limit_MB": 3}



# ----------------------------------------------------------------------------- pruning curve

def benchmark_pruning_curve(profile: str = "fast") -> dict:
    """Seconds for the whole pruning curve (every channel of the last conv layer) of one model,
    computed (never read from the cache), with the classifier's pre-activation updated per
    pruned channel (:class:`fplab.defenses.pruning._Tail`) and, for comparison in the same run,
    with the classifier re-run in full at every step.

    The traffic-sign case study's network (``traffic_cnn_wide``, 256 channels) on the GTSRB
    validation (ranking) and test sets (clean and triggered); the zoo's baseline model when it is
    cached, else a freshly initialised one of the same architecture (the timing does not depend
    on the weights).
    """
    from .defenses import pruning
    case = case_study("traffic", profile)
    recipe = case.baseline_recipe()
    splits = recipe.splits()
    if (zoo.entry_dir(recipe) / "manifest.json").exists():
        model, source = zoo.load(recipe).model, "zoo baseline model"
    else:
        model, source = build_model(recipe.model, splits.shape, splits.num_classes, seed=0), "untrained"
        model.eval()

    def timed(incremental):
        start = time.perf_counter()
        curve = pruning._pruning_curve(model, pruning._site(model, None), splits.val, splits.test,
                                       case.attack, splits.num_classes, case.asr_data(splits),
                                       pruning.DEFAULT_MAX_DROP, False, incremental)
        return curve, time.perf_counter() - start

    curve, seconds = timed(True)
    full, full_seconds = timed(False)
    return {"benchmark": "pruning curve (whole last conv layer)", "model": recipe.model,
            "weights": source, "channels": len(curve.order), "steps": len(curve.table),
            "val_images": len(splits.val), "test_images": len(splits.test),
            "seconds": round(seconds, 2), "seconds, classifier re-run per step": round(full_seconds, 2),
            "same curve": bool(curve.table.equals(full.table)), "limit_seconds": 15}


class _PlainCNN(nn.Module):
    """A BatchNorm CNN in no fplab layout (functional forward, global pooling): the kind of
    network a researcher brings, for :func:`benchmark_stopping_rule`."""

    def __init__(self, widths=(64, 128, 256), num_classes: int = 10):
        super().__init__()
        chans = (3,) + tuple(widths)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans, chans[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm2d(b) for b in widths)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        for conv, norm in zip(self.convs, self.norms):
            x = nn.functional.max_pool2d(torch.relu(norm(conv(x))), 2)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def benchmark_stopping_rule(images: int = 1000, seed: int = 0) -> dict:
    """Seconds for :func:`~fplab.defenses.pruning.prune_by_activation`'s stopping rule on a
    non-fplab CNN (last conv: 256 channels) against one full forward pass of the same validation
    set (random 32x32 images, untrained weights: timing only); target ratio <= 5."""
    from .defenses.pruning import prune_by_activation
    from .train import predict
    torch.manual_seed(seed)
    model = _PlainCNN().eval()
    gen = torch.Generator().manual_seed(seed)
    val = Data(torch.rand(images, 3, 32, 32, generator=gen), torch.randint(0, 10, (images,), generator=gen))
    predict(model, val.x[:100])  # warm-up
    start = time.perf_counter()
    predict(model, val.x)
    forward = time.perf_counter() - start
    start = time.perf_counter()
    result = prune_by_activation(model, val)
    rule = time.perf_counter() - start
    return {"model": "plain BatchNorm CNN 64-128-256, global pooling", "channels": len(result.order),
            "val_images": images, "pruned_by_rule": len(result.pruned),
            "one_forward_seconds": round(forward, 3), "stopping_rule_seconds": round(rule, 3),
            "ratio": round(rule / forward, 2), "limit_ratio": 5}


# ----------------------------------------------------------------------------- ANP

def reference_anp_masks(model: nn.Module, data: Data, eps: float = 0.4, steps: int = 1,
                        alpha: float = 0.2, lr: float = 0.2, iterations: int = 2000,
                        batch_size: int = 128, n_clean: int = 500, seed: int = 0,
                        layers=None, channels_last: bool = False) -> ANPResult:
    """The original implementation's loop (public ``ANP_backdoor`` code, ``mask_train``), written
    plainly: an independent check of :func:`anp_masks` in its ``"faithful"`` mode and the baseline
    of :func:`benchmark_anp`.

    As the original: the network in **train mode** (BatchNorm on batch statistics), masks and
    perturbations as parameters of their own, new weights ``(m + delta) * w`` and ``(1 + xi) * b``
    substituted into the model (here with ``torch.func.functional_call`` instead of swapping
    each BatchNorm for a noisy subclass), mini-batches drawn with replacement; per iteration a
    random start of the noise in ``[-eps, eps]``, ``steps`` signed SGD steps of ``eps / steps`` on
    ``-L`` with **no clip** afterwards, then a perturbed and a clean forward pass, three
    ``.backward()`` through every parameter in all, one momentum-SGD step on the masks and a clip
    to [0, 1]. Works on a copy; ``model`` is not touched. ``channels_last=True`` feeds the
    batches in the memory layout :func:`anp_masks` uses (the original uses the default one): then
    the same seed gives ``anp_masks(mode="faithful")``'s masks bit for bit.
    """
    _check(eps, alpha, steps)
    model = copy_model(model).train()
    names = neuron_layers(model, layers)
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    clean = clean_subset(data, n_clean, seed)
    device = model_device(model)
    x_all, y_all = clean.x.to(device), clean.y.to(device)
    gen = torch.Generator().manual_seed(seed)
    size = {n: _channels(modules[n]) for n in names}
    mask = {n: torch.ones(size[n], device=device, requires_grad=True) for n in names}
    delta = {n: torch.zeros(size[n], device=device, requires_grad=True) for n in names}
    xi = {n: torch.zeros(size[n], device=device, requires_grad=True) for n in names}
    mask_opt = torch.optim.SGD(list(mask.values()), lr=lr, momentum=0.9)
    noise = [*delta.values(), *xi.values()]
    noise_opt = torch.optim.SGD(noise, lr=eps / steps if eps > 0 else 1.0)

    def weights(perturbed: bool) -> dict:
        new = dict(params)
        for n in names:
            w = modules[n].weight
            scale = mask[n] + delta[n] if perturbed else mask[n]
            new[f"{n}.weight"] = w * scale.view((-1,) + (1,) * (w.dim() - 1))
            if modules[n].bias is not None and perturbed:
                new[f"{n}.bias"] = modules[n].bias * (1 + xi[n])
        return new

    def forward(x, perturbed):
        return torch.func.functional_call(model, weights(perturbed), (x,))

    losses, start = [], time.perf_counter()
    for _ in range(iterations):
        idx = torch.randint(len(clean), (batch_size,), generator=gen).to(device)
        x, y = x_all[idx], y_all[idx]
        if channels_last:
            x = to_channels_last(x)
        if eps > 0:
            with torch.no_grad():  # reset(rand_init=True)
                for t in noise:
                    t.copy_(torch.rand(t.shape, generator=gen).to(t) * 2 * eps - eps)
            for _ in range(steps):
                noise_opt.zero_grad()
                (-nn.functional.cross_entropy(forward(x, True), y)).backward()
                for t in noise:
                    if t.grad is not None:  # None: the xi of a layer without bias
                        t.grad = t.grad.sign()
                noise_opt.step()  # no clip: the original leaves the noise where the step put it
        mask_opt.zero_grad()
        if eps > 0:
            loss_rob = nn.functional.cross_entropy(forward(x, True), y)
        else:
            loss_rob = torch.zeros((), device=device)
        loss_nat = nn.functional.cross_entropy(forward(x, False), y)
        loss = alpha * loss_nat + (1 - alpha) * loss_rob
        loss.backward()
        mask_opt.step()
        with torch.no_grad():
            for m in mask.values():
                m.clamp_(0, 1)
        losses.append(loss.item())
    return ANPResult({n: m.detach().cpu().clone() for n, m in mask.items()}, losses,
                     time.perf_counter() - start, iterations)


def anp_throughput(model_name: str = "traffic_cnn_bn", in_shape=(3, 32, 32), num_classes: int = 10,
                   iterations: int = 50, batch_size: int = 128, device: str | None = None,
                   seed: int = 0) -> dict:
    """Mask-optimisation throughput (iterations/s) of :func:`anp_masks` (faithful mode, the
    default, and the ``"fplab"`` mode) vs the original's loop :func:`reference_anp_masks`, on
    random data, same model, batch and thread count, in the same run; and their ratio.

    ``model_name="resnet18", in_shape=(3, 32, 32)`` on a GPU measures the paper's setting.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(model_name, in_shape, num_classes, seed=seed).to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    n = max(batch_size, 500)
    data = Data(torch.rand(n, *in_shape, generator=gen), torch.randint(0, num_classes, (n,), generator=gen))
    kw = dict(iterations=iterations, batch_size=batch_size, n_clean=n, seed=seed)
    runs = {"ours": (anp_masks, {"progress": False}), "ref": (reference_anp_masks, {}),
            "variant": (anp_masks, {"progress": False, "mode": "fplab"})}
    for fn, extra in runs.values():  # warm-up (the first runs of a process are slower)
        fn(model, data, **{**kw, "iterations": 10}, **extra)

    def timed(fn, **extra):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(model, data, **kw, **extra)
        if device == "cuda":
            torch.cuda.synchronize()
        return iterations / (time.perf_counter() - start)

    # interleaved, best of 3: a background burst slows one run, not one contestant
    best = {name: 0.0 for name in runs}
    for _ in range(3):
        for name, (fn, extra) in runs.items():
            best[name] = max(best[name], timed(fn, **extra))
    ours, ref, variant = best["ours"], best["ref"], best["variant"]
    flop = anp_flop_per_iteration(model, data, **kw)
    return {"model": model_name, "device": device, "threads": torch.get_num_threads(),
            "batch_size": batch_size, "iterations": iterations,
            "anp_it_per_s": round(ours, 2), "anp_fplab_mode_it_per_s": round(variant, 2),
            "original_loop_it_per_s": round(ref, 2), "speedup": round(ours / ref, 2),
            "seconds_for_2000_iterations": round(2000 / ours, 1),
            "gflop_per_iteration": round(flop / 1e9, 2),
            "achieved_gflop_per_s": round(flop * ours / 1e9, 1)}


def anp_flop_per_iteration(model: nn.Module, data: Data, iterations: int = 5, **kw) -> float:
    """Floating-point operations of one iteration of :func:`anp_masks` (its convolutions and
    matrix products, as ``torch.utils.flop_counter`` counts them: the work no implementation of
    the algorithm can skip; the element-wise layers are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        anp_masks(model, data, **{**kw, "iterations": iterations}, progress=False)
    return counter.get_total_flops() / iterations


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a large float32 matrix product on the CPU at the current thread count (best of
    3 after a warm-up): the most this machine's BLAS gets out of its cores, an upper bound for
    any convolution."""
    a, b = torch.rand(size, size), torch.rand(size, size)
    a @ b
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * size ** 3 * repeats / (time.perf_counter() - start))
    return best


def benchmark_anp(iterations: int = 30) -> dict:
    """``python -m fplab benchmark``: ANP mask-optimisation throughput (iterations/s) of this
    implementation and of the original's loop, in the same run, and their ratio: for the fast
    profile's CNN on the CPU (target: >= 2x the original loop; 2000 iterations <= 45 s) and, when
    a GPU is present, for the ANP code's ResNet-18 at batch 128 (target: 2000 iterations <= 60 s).

    Beside the times, the work: the FLOPs of one iteration (three forward and two backward
    passes of the network at batch 128, the algorithm's own arithmetic), the rate achieved, and
    the time 2000 iterations would take if every FLOP ran at the speed of a large matrix product
    (:func:`matmul_peak`): a lower bound for any implementation of the loop on this machine."""
    out = {}
    cpu = anp_throughput("traffic_cnn_bn", (3, 32, 32), iterations=iterations, device="cpu")
    out.update({f"cpu traffic_cnn_bn {k}": v for k, v in cpu.items() if k not in ("model", "device")})
    # the arithmetic bound: 2000 iterations' FLOPs at the speed of a large matrix product
    peak = matmul_peak()
    out["cpu matmul_peak_gflop_per_s"] = round(peak / 1e9, 1)
    out["cpu traffic_cnn_bn seconds_for_2000_iterations_at_matmul_peak"] = round(
        2000 * cpu["gflop_per_iteration"] * 1e9 / peak, 1)
    if torch.cuda.is_available():
        gpu = anp_throughput("resnet18", (3, 32, 32), iterations=max(iterations, 50), device="cuda")
        out.update({f"cuda resnet18 {k}": v for k, v in gpu.items() if k not in ("model", "device")})
    return out
