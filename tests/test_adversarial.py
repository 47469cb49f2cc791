"""fplab.attacks.adversarial: values checked on tiny models (closed forms where there are some)."""

import pytest
import torch
from torch import nn

from fplab.attacks.adversarial import (BPDA, SoftTopK, WithDetector, cw_l2, eot_loss, fgsm,
                                       finite_difference_gradient, margin_loss, pgd,
                                       robust_accuracy, autograd_gradient, cross_entropy_loss,
                                       with_bpda)
from fplab.defenses.robust import KWTA


def linear_model(seed=0, d=16, k=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, k)).eval()


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(1)
    return torch.rand(20, 1, 4, 4, generator=gen) * 0.5 + 0.25, torch.randint(0, 3, (20,), generator=gen)


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_fgsm_matches_closed_form_on_linear_model(batch):
    """Binary-free check: for logits W x, the CE gradient is W^T (softmax - onehot)."""
    x, y = batch
    model = linear_model()
    W = model[1].weight
    p = model(x).softmax(1) - nn.functional.one_hot(y, 3)
    expected = (x + 0.1 * (p @ W).sign().view_as(x)).clamp(0, 1)
    assert torch.allclose(fgsm(model, x, y, 0.1), expected)


def test_pgd_on_linear_margin_reaches_the_corner(batch):
    """Two classes, margin loss Z_other - Z_y = (w_o - w_y).x: its maximiser over the L_inf ball
    is x + eps * sign(w_o - w_y) (inside the box here), which PGD reaches exactly."""
    x, y = batch
    model = linear_model(k=2)
    y = y % 2
    W = model[1].weight.detach()
    direction = (W[1 - y] - W[y]).sign().view_as(x)
    adv = pgd(model, x, y, 0.1, steps=20, loss="margin")
    assert torch.allclose(adv, (x + 0.1 * direction).clamp(0, 1), atol=1e-6)


def test_pgd_stays_in_ball_and_box_and_leaves_inputs_alone(batch):
    x, y = batch
    x = (x * 2 - 0.5).clamp(0, 1).repeat(1, 1, 2, 2)  # some pixels at the box edges
    model = small_cnn()
    state, x_copy = snapshot(model), x.clone()
    for norm, eps in [("inf", 0.2), (2, 0.5)]:
        adv = pgd(model, x, y, eps, steps=5, norm=norm, restarts=2)
        delta = adv - x
        size = delta.abs().flatten(1).amax(1) if norm == "inf" else delta.flatten(1).norm(dim=1)
        assert (size <= eps + 1e-5).all() and adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(x, x_copy)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not model.training


def test_restarts_never_weaker_than_one_start(batch):
    x, y = batch
    model = small_cnn()
    x8 = x.repeat(1, 1, 2, 2)
    one = robust_accuracy(model, pgd(model, x8, y, 0.05, steps=3), y)
    many = robust_accuracy(model, pgd(model, x8, y, 0.05, steps=3, restarts=4), y)
    assert many <= one


def test_restarts_keep_the_first_success_and_attack_only_the_rest(batch):
    """An image the first start fools keeps that start's adversarial image, bit for bit; the
    others get a later start's (the one that fools them, else the highest loss)."""
    x, y = batch
    model = linear_model()
    one = pgd(model, x, y, 0.1, steps=3)
    many = pgd(model, x, y, 0.1, steps=3, restarts=4)
    fooled = model(one).argmax(1) != y
    assert 0 < fooled.sum() < len(y)  # both kinds of image are in the batch
    assert torch.equal(many[fooled], one[fooled])
    assert (model(many).argmax(1) != y).sum() >= fooled.sum()


def test_keep_best_never_weaker_and_returns_successes(batch):
    """Same seed, same iterates: keeping the first successful iterate can only lower robust
    accuracy, and every image it reports as fooled is fooled by the tensor it returns."""
    x, y = batch
    model = small_cnn()
    x8 = x.repeat(1, 1, 2, 2)
    for schedule in ("constant", "cosine"):
        last = pgd(model, x8, y, 0.1, steps=6, restarts=2, schedule=schedule, step_size=0.08)
        best = pgd(model, x8, y, 0.1, steps=6, restarts=2, schedule=schedule, step_size=0.08,
                   keep_best=True)
        assert robust_accuracy(model, best, y) <= robust_accuracy(model, last, y)
        assert ((best - x8).abs().amax() <= 0.1 + 1e-6) and best.min() >= 0 and best.max() <= 1


def test_cosine_schedule_starts_at_eps(batch):
    """One cosine step from the clean image is a step of eps: on a linear model every pixel of
    the bounded image moves by exactly eps, to the corner of the ball the gradient points to."""
    x, y = batch
    x = x.clamp(0.3, 0.7)
    model = linear_model()
    adv = pgd(model, x, y, 0.2, steps=1, schedule="cosine", random_start=False)
    assert torch.allclose((adv - x).abs(), torch.full_like(x, 0.2), atol=1e-6)
    assert torch.equal(adv, pgd(model, x, y, 0.2, steps=1, step_size=0.2, random_start=False))


def test_eot_on_a_deterministic_model_is_the_plain_gradient(batch):
    x, y = batch
    model = small_cnn()
    x8 = x.repeat(1, 1, 2, 2)
    plain = autograd_gradient(model, x8, y, cross_entropy_loss, 1)
    eot = autograd_gradient(model, x8, y, cross_entropy_loss, 5)
    assert torch.allclose(plain, eot, atol=1e-6)
    assert torch.allclose(eot_loss(model, x8, y, cross_entropy_loss, 3), cross_entropy_loss(model(x8), y))


def test_finite_differences_recover_a_linear_gradient(batch):
    x, y = batch
    model = linear_model()
    est = finite_difference_gradient(samples=4000, sigma=0.01)(model, x, y, cross_entropy_loss)
    true = autograd_gradient(model, x, y, cross_entropy_loss)
    cos = nn.functional.cosine_similarity(est.flatten(1), true.flatten(1)).mean()
    assert cos > 0.9


def test_bpda_forward_of_layer_backward_of_surrogate():
    x = torch.tensor([-1.0, 0.5, 2.0], requires_grad=True)
    layer = BPDA(lambda t: (t > 0).float(), lambda t: 3 * t)  # step forward, slope-3 backward
    out = layer(x)
    assert torch.equal(out.detach(), torch.tensor([0.0, 1.0, 1.0]))
    out.sum().backward()
    assert torch.equal(x.grad, torch.full((3,), 3.0))


def test_soft_top_k_is_a_smooth_k_wta_for_bpda():
    """SoftTopK tends to k-WTA's hard mask as T -> 0, scales with its input, and as BPDA keeps
    k-WTA's forward pass while giving the losers near the threshold a gradient."""
    torch.manual_seed(0)
    z = torch.randn(3, 2, 5, 5)
    hard = KWTA(0.2)(z)
    assert torch.allclose(SoftTopK(0.2, 1e-6)(z), hard, atol=1e-6)
    assert torch.allclose(SoftTopK(0.2, 0.1)(3 * z), 3 * SoftTopK(0.2, 0.1)(z), atol=1e-5)
    z.requires_grad_(True)
    out = BPDA(KWTA(0.2), SoftTopK(0.2, 0.1))(z)
    assert torch.allclose(out, hard, atol=1e-6)
    (grad,) = torch.autograd.grad(out.sum(), z)
    flat, g = z.detach().flatten(1), grad.flatten(1)
    loser = flat < flat.topk(10, dim=1).values[:, -1:]  # k = 10 of 50 per sample
    assert (g[loser] != 0).any()  # the hard k-WTA gives them exactly 0
    model = nn.Sequential(nn.Conv2d(1, 4, 3), KWTA(0.2), nn.Flatten(), nn.Linear(144, 3)).eval()
    soft = with_bpda(model, KWTA, lambda m: SoftTopK(m.ratio))
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(soft(x), model(x), atol=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        SoftTopK(0.2, 0.0)


def test_margin_loss_with_reject_and_detector_pair():
    logits = torch.tensor([[5.0, 1.0, 0.0, 9.0], [0.0, 4.0, 1.0, -2.0]])
    y = torch.tensor([0, 0])
    assert torch.allclose(margin_loss(reject=3)(logits, y), torch.tensor([1.0 - 9.0, 4.0 - 0.0]))
    clf = linear_model(d=16, k=3)
    pair = WithDetector(clf, lambda x: torch.full((len(x),), 1.0))
    out = pair(torch.rand(4, 1, 4, 4))
    assert out.shape == (4, 4) and torch.allclose(out[:, 3], 2 * out[:, :3].amax(1))


def test_cw_l2_succeeds_with_small_distortion(batch):
    x, y = batch
    model = linear_model()
    adv = cw_l2(model, x, y, steps=100, binary_steps=4, lr=0.05)
    fooled = model(adv).argmax(1) != y
    assert fooled.float().mean() >= 0.9
    assert (adv >= 0).all() and (adv <= 1).all()
    # C&W's distortion is no larger than what FGSM-sized L_inf steps need
    assert (adv - x)[fooled].flatten(1).norm(dim=1).mean() < 2.0


@pytest.mark.parametrize("call, name", [
    (lambda m, x, y: pgd(m, x, y, eps=-0.1), "eps"),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, norm=1), "norm"),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, eot_samples=0), "eot_samples"),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, restarts=0), "restarts"),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, schedule="linear"), "schedule"),
    (lambda m, x, y: fgsm(m, x, y, eps=1.5), "eps"),
    (lambda m, x, y: cw_l2(m, x, y, steps=0), "steps"),
])
def test_bad_inputs_name_the_parameter(batch, call, name):
    x, y = batch
    with pytest.raises(ValueError, match=name):
        call(linear_model(), x, y)


def test_training_mode_is_refused_where_eval_is_required(batch):
    x, y = batch
    model = linear_model().train()
    with pytest.raises(ValueError, match="training mode"):
        fgsm(model, x, y, 0.1)
    with pytest.raises(ValueError, match="training mode"):
        cw_l2(model, x, y)


def test_pgd_default_path_is_unchanged(batch):
    """The plain L_inf path (CLB depends on it) equals the loop written out here."""
    x, y = batch
    model = small_cnn()
    x8 = x.repeat(1, 1, 2, 2)
    gen = torch.Generator().manual_seed(0)
    adv = (x8 + (torch.rand(x8.shape, generator=gen) * 2 - 1) * 0.1).clamp(0, 1)
    for _ in range(3):
        adv.requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(adv), y), adv)
        adv = torch.min(torch.max(adv.detach() + (2.5 * 0.1 / 3) * g.sign(), x8 - 0.1), x8 + 0.1).clamp(0, 1)
    assert torch.equal(pgd(model, x8, y, 0.1, steps=3), adv)


def test_pgd_agrees_with_the_adversarial_robustness_toolbox():
    """Cross-check against ART's ProjectedGradientDescent on the same (briefly trained) model.

    Without a random start both are the same deterministic iteration (signed gradient step,
    projection onto the eps-ball and the image box): the adversarial images must agree to 1e-5.
    With a random start the two draw different starting points (ART from NumPy, seeded here so
    the test is repeatable): robust accuracy must agree within 2 points, 4 images of 200 (over
    seeds 0-4 the gap was 1-3 images).
    Counts, not fractions, so a tolerance is not decided by floating-point rounding."""
    art = pytest.importorskip("art")
    import numpy as np
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier
    from fplab.data import load_dataset
    from fplab.train import train
    splits = load_dataset("synthetic")
    torch.manual_seed(0)
    shape = splits.shape
    model = nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], 64), nn.ReLU(),
                          nn.Linear(64, splits.num_classes))
    train(model, splits.train, epochs=5, lr=3e-3, progress=False)
    model.eval()
    x, y = splits.test.x, splits.test.y
    eps, steps = 0.15, 20
    clf = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=shape,
                            nb_classes=splits.num_classes, clip_values=(0.0, 1.0))

    def correct(adv):
        with torch.no_grad():
            return model(adv).argmax(1) == y

    def art_pgd(random_init):
        np.random.seed(0)
        attack = ProjectedGradientDescent(clf, norm="inf", eps=eps, eps_step=eps / 8,
                                          max_iter=steps, num_random_init=random_init,
                                          batch_size=200, verbose=False)
        return torch.from_numpy(attack.generate(x.numpy(), y=y.numpy()))

    clean = int(correct(x).sum())
    ours = pgd(model, x, y, eps, steps=steps, step_size=eps / 8, random_start=False)
    theirs = art_pgd(0)
    assert clean - int(correct(theirs).sum()) >= 20  # the attack does something
    assert (ours - theirs).abs().max() <= 1e-5
    ours = int(correct(pgd(model, x, y, eps, steps=steps, step_size=eps / 8)).sum())
    theirs = int(correct(art_pgd(1)).sum())
    assert abs(ours - theirs) <= 4, (ours, theirs)
