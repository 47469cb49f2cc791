"""Chapter 6 (adversarial examples and adaptive attacks): recipes, cached attack runs, tables and
figures. The algorithms live in :mod:`fplab.attacks.adversarial` and :mod:`fplab.defenses.robust`.

Every attack run here is cached (``$FPLAB_CACHE/results/ch06``, keyed by a hash of the model's
weights, the images and the attack's arguments), so a warm re-run of the chapter takes seconds.
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .. import zoo
from ..plots import slider_explorer
from ..attacks.adversarial import (PGD_VERSION, SoftTopK, cw_l2, fgsm, finite_difference_gradient,
                                   margin_loss, pgd, robust_accuracy, with_bpda)
from ..defenses import robust as R
from ..paths import cache_dir
from ..store import fingerprint, load_result, save_result
from ..train import preserved_rng
from .report import expectation

EPS = 0.3
TRAIN = {"epochs": 5, "lr": 3e-3, "batch_size": 128}
AT_TRAIN = {"epochs": 10, "lr": 5e-3, "batch_size": 100}
FGSM_RS = {"eps": EPS, "method": "fgsm_rs", "alpha": 0.375}   # Wong et al. 2020, MNIST
#: the lecture's PGD inside SGD, made to train on a CPU budget: 5 steps of 0.1 (Madry et al.:
#: 40 of 0.01), eps ramped up over the first 2 epochs, starting from the clean model, and the
#: best epoch by PGD-10 accuracy on 200 validation images (never the test set)
PGD_AT = {"eps": EPS, "method": "pgd", "steps": 5, "alpha": 0.1, "ramp_epochs": 2,
          "init": dict(TRAIN), "val_images": 200}
PGD_AT_TRAIN = {"epochs": 10, "lr": 3e-3, "batch_size": 100}
KWTA_RATIO = 0.1
#: Xiao et al.'s setting: the k-WTA network adversarially trained exactly as the ReLU baseline
#: (:data:`PGD_AT`, :data:`PGD_AT_TRAIN`), the inner PGD through its own, masked gradients
KWTA_AT = dict(PGD_AT)
KWTA_TRAIN = dict(PGD_AT_TRAIN)
#: the adaptive attack on k-WTA (an attack's parameters, never the defense's): BPDA with a soft
#: top-k mask (:class:`fplab.attacks.adversarial.SoftTopK`, temperature 0.05 x the activations'
#: std: the best of 0.02-1.0 under PGD-40 x 5 on the last 200 *validation* images, 29.0% left
#: against 33.5% at 0.1 and 40.5% at 0.02; with the cosine schedule too: 20.5% against 24.0% at
#: 0.1 and 26.0% at 0.02), 5 random restarts, and the step budget of Tramer et al. (100 steps)
#: with a cosine step-size schedule, keeping the first iterate that fools the model: on the same
#: validation images 16.0% left, against 19.0% (cosine, last iterate), 27.0% (constant step,
#: kept) and 30.5% (constant, last); 40 steps: 20.5 / 22.0 / 25.5 / 29.0%
KWTA_SOFT_T = 0.05
KWTA_RESTARTS = 5
KWTA_STEPS = 100
KWTA_SCHEDULE = {"schedule": "cosine", "keep_best": True}
#: the finite-difference attack's noise scale: the best of 0.02-0.2 on the last 50 validation
#: images at 100 samples, 20 steps (66% left at 0.1; 74% at 0.2, 76% at 0.05); eps 0.3 on MNIST
#: is ~10x CIFAR-10's 8/255, so a wider sigma than Tramer et al.'s
KWTA_FD_SIGMA = 0.1
DROPOUT_P = 0.5

#: the papers' numbers this chapter compares with (RESEARCH.md section 4)
PAPER = {
    "undefended": "~0% (Madry et al. 2018)",
    "n_plus_one": "100% success, L2 2.05 -> 2.26 (x1.10; Carlini & Wagner 2017)",
    "pca": "naive AUROC ~100; top-k attack undetected (C&W 2017)",
    "dropout": "EOT succeeds (~98%, unverified; C&W 2017)",
    "kwta": "50.0% -> 0.16% (CIFAR-10, adv. trained; Tramer et al. 2020)",
    "adversarial": "89.6% PGD w/ 50 restarts, 92.5% PGD-100 (Madry MNIST challenge)",
}


# ----------------------------------------------------------------------------- models

def recipes(profile: str = "fast", seed: int = 0) -> dict[str, zoo.Recipe]:
    """The chapter's models: undefended, N+1 detector, dropout, k-WTA (+ FGSM-RS), adv. trained."""
    base = zoo.Recipe("mnist", "mnist_small", train=dict(TRAIN), seed=seed, profile=profile)
    return {
        "undefended": base,
        "n_plus_one": zoo.Recipe("mnist", "mnist_small", train=dict(TRAIN), seed=seed,
                                 profile=profile, kind="n_plus_one",
                                 extra={"eps": EPS, "steps": 10, "n_adv": 20000}),
        "dropout": zoo.Recipe("mnist", "mnist_small", train=dict(TRAIN), seed=seed,
                              profile=profile, kind="dropout", extra={"p": DROPOUT_P}),
        "kwta": zoo.Recipe("mnist", "mnist_small", train=dict(KWTA_TRAIN), seed=seed,
                           profile=profile, kind="kwta",
                           extra={"ratio": KWTA_RATIO, "adversarial": dict(KWTA_AT)}),
        "fgsm_rs": zoo.Recipe("mnist", "mnist_small", train=dict(AT_TRAIN), seed=seed,
                              profile=profile, kind="adversarial", extra=dict(FGSM_RS)),
        "pgd_at": zoo.Recipe("mnist", "mnist_small", train=dict(PGD_AT_TRAIN),
                             seed=seed, profile=profile, kind="adversarial", extra=dict(PGD_AT)),
    }


def load_models(splits, profile="fast", seed=0, root=None):
    """``(models, trained_now)``: every model of :func:`recipes` from the zoo, with the dropout
    and k-WTA layers put back (the zoo stores the plain networks)."""
    models, trained = {}, {}
    for name, recipe in recipes(profile, seed).items():
        entry = zoo.load(recipe, root=root, splits=splits)
        models[name], trained[name] = entry.model.eval(), entry.trained_now
    models["dropout"] = R.test_time_dropout(models["dropout"], DROPOUT_P).eval()
    models["kwta"] = R.kwta_model(models["kwta"], KWTA_RATIO).eval()
    return models, trained


# ----------------------------------------------------------------------------- cached attacks

def cached(tag: str, model: nn.Module, x: Tensor, attack, seed: int = 0, key: dict | None = None,
           **kwargs) -> Tensor:
    """``attack(model, x, seed=seed, **kwargs)`` (adversarial images), computed once and cached
    under a hash of the weights, the images, the arguments and
    :data:`~fplab.attacks.adversarial.PGD_VERSION`. Arguments that are functions are
    keyed by ``tag`` and ``key`` only (name what they depend on there). Seeds torch first, inside
    :func:`fplab.train.preserved_rng`."""
    key = fingerprint(tag, PGD_VERSION, model.state_dict(), x, seed, key or {},
                      {k: (v if isinstance(v, (int, float, str, type(None))) else type(v).__name__)
                       for k, v in kwargs.items() if not isinstance(v, Tensor)},
                      *[v for v in kwargs.values() if isinstance(v, Tensor)])
    folder = cache_dir() / "results" / "ch06"
    hit = load_result(folder, key)
    if hit is not None:
        return hit[0]
    start = time.perf_counter()
    with preserved_rng():  # a hit and a miss leave the notebook's generators alike
        torch.manual_seed(seed)
        out = (attack(model, x, seed=seed, **kwargs) if attack is not cw_l2
               else attack(model, x, **kwargs))
    save_result(folder, key, out, {"tag": tag, "seconds": round(time.perf_counter() - start, 2)})
    return out


def l2(x_adv: Tensor, x: Tensor) -> Tensor:
    return (x_adv - x).flatten(1).norm(dim=1)


def _pct(v):
    return f"{v:.1%}"


# ----------------------------------------------------------------------------- section 1

def projection_figure(eps: float = 0.3, steps: int = 8, step_size: float = 0.12):
    """PGD on a 2-pixel "image": gradient ascent on a toy loss, each step projected back onto the
    L_inf ball around x (square) intersected with the image box [0, 1]^2."""
    x0 = np.array([0.75, 0.55])
    w = np.array([1.0, 0.6])  # loss(x) = w.x + 0.8 * x_2^2: its gradient points up and right
    grad = lambda p: w + np.array([0.0, 1.6 * p[1]])  # noqa: E731
    fig, ax = plt.subplots(figsize=(7, 3.5))
    gx, gy = np.meshgrid(np.linspace(-0.05, 1.15, 60), np.linspace(-0.05, 1.15, 60))
    ax.contour(gx, gy, w[0] * gx + w[1] * gy + 0.8 * gy ** 2, levels=12, cmap="Greys", alpha=0.5)
    ax.add_patch(plt.Rectangle((0, 0), 1, 1, fill=False, color="black", lw=1.5, label="image box [0,1]²"))
    ax.add_patch(plt.Rectangle(x0 - eps, 2 * eps, 2 * eps, fill=False, color="tab:blue", lw=1.5,
                               ls="--", label=f"L∞ ball, ε={eps}"))
    p = x0 + np.array([-0.2, 0.1])
    ax.plot(*p, "o", color="tab:orange")
    for _ in range(steps):
        q = p + step_size * np.sign(grad(p))
        r = np.clip(np.clip(q, x0 - eps, x0 + eps), 0, 1)
        ax.annotate("", q, p, arrowprops=dict(arrowstyle="->", color="tab:orange"))
        if np.abs(q - r).max() > 1e-9:
            ax.annotate("", r, q, arrowprops=dict(arrowstyle="->", color="tab:red", ls=":"))
        p = r
        ax.plot(*p, "o", color="tab:orange", ms=4)
    ax.plot(*x0, "k*", ms=12, label="clean x")
    ax.plot([], [], color="tab:orange", label="signed gradient step")
    ax.plot([], [], color="tab:red", ls=":", label="projection")
    ax.set(xlim=(-0.1, 1.6), ylim=(-0.05, 1.1), xlabel="pixel 1", ylabel="pixel 2",
           title="PGD: step, then project onto ball ∩ box", aspect="equal")
    ax.legend(loc="center right", fontsize=10)
    fig.tight_layout()
    return fig


def accuracy_vs_eps(models: dict[str, nn.Module], x, y, eps_grid, steps=40, seed=0) -> pd.DataFrame:
    """Accuracy under L_inf PGD (``steps``, default step size) for every eps and model."""
    rows = []
    for name, model in models.items():
        for eps in eps_grid:
            adv = x if eps == 0 else cached("pgd", model, x, pgd, y=y, eps=eps, steps=steps, seed=seed)
            rows.append({"model": name, "eps": eps, "accuracy": robust_accuracy(model, adv, y)})
    return pd.DataFrame(rows)


def plot_accuracy_vs_eps(frame: pd.DataFrame, title="Accuracy under PGD-40 (L∞)"):
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, group in frame.groupby("model", sort=False):
        ax.plot(group["eps"], 100 * group["accuracy"], marker="o", label=name)
    ax.axvline(EPS, color="grey", ls=":", lw=1)
    ax.set(xlabel="ε (L∞ radius, pixels in [0, 1])", ylabel="accuracy (%)", title=title, ylim=(-3, 103))
    ax.legend()
    fig.tight_layout()
    return fig


def show_examples(model, x, x_adv, n=6):
    """Clean images (top) and their PGD versions (bottom) with the model's predictions."""
    with torch.no_grad():
        p0, p1 = model(x[:n]).argmax(1), model(x_adv[:n]).argmax(1)
    fig, axes = plt.subplots(2, n, figsize=(7, 2.8))
    for i in range(n):
        for row, img, pred in ((0, x[i], p0[i]), (1, x_adv[i], p1[i])):
            axes[row, i].imshow(img[0], cmap="gray", vmin=0, vmax=1)
            axes[row, i].set_title(f"pred {pred.item()}", fontsize=10)
            axes[row, i].axis("off")
    fig.suptitle(f"clean (top) and PGD, ε={EPS} (bottom)", fontsize=11)
    fig.tight_layout()
    return fig


def eps_explorer(model, x, y, curve: pd.DataFrame, n: int = 6, steps: int = 40, seed: int = 0):
    """A kernel-free slider over the eps of ``curve`` (:func:`accuracy_vs_eps` of ``model``): for
    each eps, ``n`` PGD images with the model's predictions (red: wrong) and where that eps sits
    on the accuracy curve. Every frame comes from the cached attack runs of the curve."""
    accuracy = curve.set_index("eps")["accuracy"]

    def draw(fig, eps):
        adv = x[:n] if eps == 0 else cached("pgd", model, x, pgd, y=y, eps=eps, steps=steps,
                                             seed=seed)[:n]
        with torch.no_grad():
            pred = model(adv).argmax(1)
        grid = fig.add_gridspec(2, n // 2 + 3)
        for i in range(n):
            ax = fig.add_subplot(grid[i % 2, i // 2])
            ax.imshow(adv[i, 0], cmap="gray", vmin=0, vmax=1)
            wrong = pred[i].item() != y[i].item()
            ax.set_title(f"pred {pred[i].item()}", fontsize=9, color="red" if wrong else "black")
            ax.axis("off")
        ax = fig.add_subplot(grid[:, n // 2:])
        ax.plot(accuracy.index, 100 * accuracy.values, marker="o", label="PGD-40 accuracy")
        ax.plot([eps], [100 * accuracy[eps]], "o", color="red", ms=10, label="this ε")
        ax.set(xlabel="ε", ylabel="accuracy (%)", ylim=(-3, 103), title="undefended CNN")
        ax.legend(fontsize=8)

    return slider_explorer(draw, list(accuracy.index), "ε", figsize=(7, 3.2))


# ----------------------------------------------------------------------------- section 2

def n_plus_one_rows(base, detector, x, y, n_cw=100, seed=0) -> tuple[list[dict], dict]:
    """Grosse et al.'s N+1 network under three attacks (robust accuracy counts a rejected image
    as defended), and C&W L_2 on the undefended vs the defended network (success, distortion)."""
    N = 10
    adv_zero = cached("pgd", base, x, pgd, y=y, eps=EPS, steps=40, seed=seed)
    first_n = lambda z, t: nn.functional.cross_entropy(z[:, :N], t, reduction="none")  # noqa: E731
    adv_naive = cached("pgd-first-n", detector, x, pgd, y=y, eps=EPS, steps=40, loss=first_n, seed=seed)
    adv_adapt = cached("pgd-reject", detector, x, pgd, y=y, eps=EPS, steps=100, step_size=0.01,
                       restarts=5, loss=margin_loss(reject=N), reject=N, seed=seed)
    rows = []
    for knowledge, attack, adv in [("zero", "PGD on the undefended CNN (transfer)", adv_zero),
                                   ("perfect", "PGD on the classifier's N logits (naive)", adv_naive),
                                   ("perfect", "PGD on classifier + detector (adaptive)", adv_adapt)]:
        with torch.no_grad():
            pred = detector(adv).argmax(1)
        rows.append({"defense": "N+1 detector", "knowledge": knowledge, "attack": attack,
                     "detected": (pred == N).float().mean().item(),
                     "robust accuracy": robust_accuracy(detector, adv, y, reject=N)})
    xs, ys = x[:n_cw], y[:n_cw]
    cw_base = cached("cw", base, xs, cw_l2, y=ys, steps=100, binary_steps=5, lr=0.1, seed=seed)
    cw_def = cached("cw-reject", detector, xs, cw_l2, y=ys, steps=100, binary_steps=5, lr=0.1,
                    reject=N, seed=seed)
    with torch.no_grad():
        ok_b = base(cw_base).argmax(1) != ys
        pd_ = detector(cw_def).argmax(1)
        ok_d = (pd_ != ys) & (pd_ != N)
    both = ok_b & ok_d
    cw = {"success undefended": ok_b.float().mean().item(),
          "success defended": ok_d.float().mean().item(),
          "L2 undefended": l2(cw_base, xs)[both].mean().item(),
          "L2 defended": l2(cw_def, xs)[both].mean().item()}
    cw["ratio"] = cw["L2 defended"] / cw["L2 undefended"]
    return rows, cw


# ----------------------------------------------------------------------------- section 3

def pca_rows(base, train_x, val_x, x, y, fpr=0.05, seed=0) -> tuple[list[dict], R.PCADetector]:
    """Hendrycks and Gimpel's detector (threshold at ``fpr`` false positives on clean validation
    images) under naive PGD, and PGD confined to the first k principal components (with the
    defender's components: perfect knowledge; with the attacker's own, fitted on other images:
    limited knowledge)."""
    det = R.PCADetector.fit(train_x)
    own = R.PCADetector.fit(val_x, k=det.k)  # the attacker's PCA of its own images
    thr = det.threshold(val_x, fpr)
    clean_scores = det.score(x)
    runs = [("zero", "PGD on the undefended CNN", cached("pgd", base, x, pgd, y=y, eps=EPS, steps=40, seed=seed)),
            ("limited", f"PGD in the attacker's own top-{det.k} PCs",
             cached("pgd-pca-own", base, x, pgd, y=y, eps=EPS, steps=40,
                    project=own.subspace_projection(10), key={"k": own.k}, seed=seed)),
            ("perfect", f"PGD in the defender's top-{det.k} PCs (adaptive)",
             cached("pgd-pca", base, x, pgd, y=y, eps=EPS, steps=40,
                    project=det.subspace_projection(10), key={"k": det.k}, seed=seed))]
    rows = []
    for knowledge, attack, adv in runs:
        s = det.score(adv)
        with torch.no_grad():
            wrong = base(adv).argmax(1) != y
        rows.append({"defense": "PCA detector", "knowledge": knowledge, "attack": attack,
                     "AUROC": R.auroc(clean_scores, s), "detected": (s > thr).float().mean().item(),
                     "robust accuracy": 1 - (wrong & (s <= thr)).float().mean().item()})
    return rows, det


# ----------------------------------------------------------------------------- section 4

def dropout_rows(dropout_model, x, y, K=8, kappa=3.0, draws=10, seed=0) -> list[dict]:
    """Test-time dropout under C&W L_2: on the network with dropout switched off (zero knowledge
    of the randomness), on one frozen draw Z_1 (naive), and with EOT over K draws (adaptive,
    margin ``kappa``). Robust accuracy: the randomised model's, averaged over ``draws`` passes."""
    deterministic = _without_dropout(dropout_model)
    one_draw = R.sample_network(dropout_model, seed=seed + 1)
    runs = [("zero", "C&W on the network without dropout", deterministic, "cw-no-dropout",
             dict(steps=100, binary_steps=5, lr=0.1)),
            ("perfect", "C&W on one draw Z_1 (naive)", one_draw, "cw-one-draw",
             dict(steps=100, binary_steps=5, lr=0.1)),
            ("perfect", f"C&W with EOT, K={K}, κ={kappa:g} (adaptive)", dropout_model, "cw-eot",
             dict(steps=100, binary_steps=2, c=10.0, lr=0.1, eot_samples=K, confidence=kappa))]
    rows = []
    for knowledge, attack, model, tag, kw in runs:
        # the three networks share one state_dict: the tag tells their cached results apart
        adv = cached(tag, model, x, cw_l2, y=y, seed=seed, **kw)
        torch.manual_seed(seed)
        rows.append({"defense": "test-time dropout", "knowledge": knowledge, "attack": attack,
                     "robust accuracy": robust_accuracy(dropout_model, adv, y, draws=draws),
                     "mean L2": l2(adv, x).mean().item()})
    return rows


def _without_dropout(model):
    return R._replace(model, lambda m: isinstance(m, R.AlwaysDropout), lambda m: nn.Identity())


# ----------------------------------------------------------------------------- section 5

def kwta_rows(kwta, base, x, y, n_fd=50, fd_samples=100, fd_steps=20, fd_sigma=KWTA_FD_SIGMA,
              restarts=KWTA_RESTARTS, temperature=KWTA_SOFT_T, steps=KWTA_STEPS,
              seed=0) -> list[dict]:
    """k-WTA (adversarially trained, :data:`KWTA_AT`) under PGD through its own gradient (naive;
    PGD-40 once, and with the adaptive attack's budget: ``steps`` steps on the cosine schedule,
    ``restarts`` restarts, first success kept, :data:`KWTA_SCHEDULE`), BPDA with ReLU in the
    backward pass, BPDA with a soft top-k mask (:class:`SoftTopK`, the adaptive attack, that
    same budget) and PGD on gradients smoothed by finite differences (Tramer et al.; on the
    first ``n_fd`` images). Each L_inf, eps 0.3. Rows in that order."""
    relu = with_bpda(kwta, R.KWTA, lambda m: nn.ReLU())
    soft = with_bpda(kwta, R.KWTA, lambda m: SoftTopK(m.ratio, temperature))
    xs, ys = x[:n_fd], y[:n_fd]
    runs = [("zero", "PGD on the undefended CNN", x, y, cached("pgd", base, x, pgd, y=y, eps=EPS, steps=40, seed=seed)),
            ("perfect", "PGD-40 through k-WTA (naive)", x, y,
             cached("pgd", kwta, x, pgd, y=y, eps=EPS, steps=40, seed=seed)),
            ("perfect", f"PGD-{steps} x {restarts} restarts, cosine steps, through k-WTA (naive)",
             x, y, cached("pgd", kwta, x, pgd, y=y, eps=EPS, steps=steps, restarts=restarts,
                          seed=seed, **KWTA_SCHEDULE)),
            ("perfect", "PGD-40 + BPDA (ReLU backward)", x, y,
             cached("pgd-bpda", relu, x, pgd, y=y, eps=EPS, steps=40, seed=seed)),
            ("perfect",
             f"PGD-{steps} x {restarts} restarts, cosine steps + BPDA (soft top-k, "
             f"T = {temperature:g} std)", x, y,
             cached("pgd-bpda-soft-topk", soft, x, pgd, y=y, eps=EPS, steps=steps,
                    restarts=restarts, seed=seed, key={"temperature": temperature},
                    **KWTA_SCHEDULE)),
            ("perfect", f"PGD-{fd_steps}, finite-difference gradients ({fd_samples} samples, "
                        f"σ = {fd_sigma:g})", xs, ys,
             cached("pgd-fd", kwta, xs, pgd, y=ys, eps=EPS, steps=fd_steps, seed=seed,
                    gradient=finite_difference_gradient(fd_samples, fd_sigma, seed),
                    key={"samples": fd_samples, "sigma": fd_sigma}))]
    return [{"defense": "k-WTA", "knowledge": k, "attack": a, "images": len(xi),
             "robust accuracy": robust_accuracy(kwta, adv, yi)} for k, a, xi, yi, adv in runs]


# ----------------------------------------------------------------------------- section 6

def adversarial_training_rows(models: dict[str, nn.Module], x, y, seed=0, restarts=10,
                              full=("pgd_at",)) -> list[dict]:
    """Each adversarially trained model: clean accuracy, FGSM, PGD-40 and (for the models in
    ``full``) PGD-50 with ``restarts`` random restarts, step 0.01. FGSM accuracy far above PGD
    accuracy is the signature of catastrophic overfitting."""
    strong = f"PGD-50, {restarts} restarts"
    rows = []
    for name, model in models.items():
        row = {"model": name, "clean accuracy": robust_accuracy(model, x, y)}
        row["FGSM"] = robust_accuracy(model, cached("fgsm", model, x, fgsm, y=y, eps=EPS), y)
        row["PGD-40"] = robust_accuracy(model, cached("pgd", model, x, pgd, y=y, eps=EPS, steps=40,
                                                      seed=seed), y)
        row[strong] = (robust_accuracy(model, cached("pgd", model, x, pgd, y=y, eps=EPS, steps=50,
                                                     step_size=0.01, restarts=restarts, seed=seed), y)
                       if name in full else float("nan"))
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- tables

def table(rows: list[dict]) -> "pd.io.formats.style.Styler":
    """An HTML table: fractions as percent with one decimal, "-" where there is no value."""
    frame = pd.DataFrame(rows)
    pct = [c for c in frame.columns if c in ("detected", "robust accuracy", "AUROC", "accuracy",
                                              "clean accuracy", "FGSM") or c.startswith("PGD")]
    fmt = {c: (lambda v: "-" if pd.isna(v) else f"{v:.1%}") for c in pct}
    for c in frame.columns:
        if c not in pct and frame[c].dtype.kind == "f":
            fmt[c] = lambda v: "-" if pd.isna(v) else f"{v:.2f}"
    return frame.style.format(fmt, na_rep="-").hide(axis="index")


def pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.1%}"


# ----------------------------------------------------------------------------- benchmark

def benchmark_pgd(n: int = 500, steps: int = 20, eps: float = EPS) -> dict:
    """PGD throughput (images x steps per second) of fplab and of the Adversarial Robustness
    Toolbox on the course's MNIST CNN (``mnist_cnn``, untrained weights: speed only), same run."""
    from ..models import build_model
    model = build_model("mnist_cnn", (1, 28, 28), 10, seed=0).eval()
    x, y = torch.rand(n, 1, 28, 28), torch.randint(0, 10, (n,))
    start = time.perf_counter()
    pgd(model, x, y, eps, steps=steps)
    ours = n * steps / (time.perf_counter() - start)
    figures = {"images": n, "steps": steps, "fplab PGD (image-steps/s)": round(ours)}
    try:
        from art.attacks.evasion import ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        figures["ART PGD (image-steps/s)"] = "not installed"
        return figures
    clf = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                            nb_classes=10, clip_values=(0.0, 1.0))
    art = ProjectedGradientDescent(clf, norm=np.inf, eps=eps, eps_step=2.5 * eps / steps,
                                   max_iter=steps, batch_size=500, verbose=False)
    start = time.perf_counter()
    art.generate(x.numpy(), y=y.numpy())
    figures["ART PGD (image-steps/s)"] = round(n * steps / (time.perf_counter() - start))
    return figures


# ----------------------------------------------------------------------------- expectations

def expectations(acc_eps, det_rows, cw, pca_rows, drop_rows, kwta_rows, at_row,
                 restarts=10) -> list[dict]:
    """The chapter's expectations (issue 10) as :func:`fplab.chapters.report.expectation` rows,
    from the tables of sections 1-6 (``at_row``: the adversarially trained model's row)."""
    d_naive, d_adapt = det_rows[1], det_rows[2]
    p_naive, p_adapt = pca_rows[0], pca_rows[2]
    o_naive, o_adapt = drop_rows[1], drop_rows[2]
    k_naive, k_soft, k_fd = kwta_rows[1], kwta_rows[4], kwta_rows[5]
    strong = at_row[f"PGD-50, {restarts} restarts"]
    k_best = min(r["robust accuracy"] for r in (kwta_rows[3], k_soft, k_fd))
    ra = "robust accuracy"
    return [
        expectation("PGD eps 0.3 drives the undefended CNN under 2%", acc_eps < 0.02,
                    pct(acc_eps), "~0%"),
        expectation("N+1 detector holds vs naive PGD (>= 80% detected)",
                    d_naive["detected"] >= 0.8, pct(d_naive["detected"]), "detects"),
        expectation("N+1 detector falls to the adaptive attack (< 10% robust)",
                    d_adapt[ra] < 0.1, pct(d_adapt[ra]), "100% success"),
        expectation("C&W distortion ratio defended / undefended (< 150%)", cw["ratio"] < 1.5,
                    pct(cw["ratio"]), "110.2%"),
        expectation("PCA detector holds vs naive PGD (>= 80% detected)",
                    p_naive["detected"] >= 0.8, pct(p_naive["detected"]), "AUROC 100"),
        expectation("PCA detector falls to the top-k attack (< 10% detected)",
                    p_adapt["detected"] < 0.1, pct(p_adapt["detected"]), "undetected"),
        expectation("dropout holds vs the one-draw attack (>= 50% robust)",
                    o_naive[ra] >= 0.5, pct(o_naive[ra]), "attack fails"),
        expectation("dropout falls to EOT (< 10% robust)", o_adapt[ra] < 0.1,
                    pct(o_adapt[ra]), "~98% success"),
        expectation("k-WTA looks robust to naive PGD (>= 50%)", k_naive[ra] >= 0.5,
                    pct(k_naive[ra]), "50.0%"),
        expectation("k-WTA falls to BPDA / smoothed gradients (< 10%)", k_best < 0.1,
                    f"{pct(k_soft[ra])} / {pct(k_fd[ra])}", "0.16%"),
        expectation(f"adversarial training >= 80% under PGD-50 x {restarts} restarts",
                    strong >= 0.8, pct(strong), "89.6%"),
        expectation("... at >= 97% clean accuracy", at_row["clean accuracy"] >= 0.97,
                    pct(at_row["clean accuracy"]), "98.8%"),
    ]
