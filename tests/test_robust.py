"""fplab.defenses.robust: detectors, dropout, k-WTA, adversarial training, on tiny models."""

import pytest
import torch
from torch import nn

from fplab import zoo
from fplab.attacks.adversarial import pgd, robust_accuracy
from fplab.data import Data
from fplab.defenses import robust as R


def test_kwta_keeps_exactly_k_per_sample():
    x = torch.randn(5, 3, 4, 4)
    x[0] = 0.0  # all ties: still exactly k survive
    out = R.KWTA(0.1)(x)
    k = 5  # ceil(0.1 * 48)
    assert ((out != 0).flatten(1).sum(1)[1:] == k).all()
    flat, kept = x.flatten(1)[1:], out.flatten(1)[1:]
    assert torch.equal(kept.topk(k, 1).values, flat.topk(k, 1).values)  # the k largest, unchanged
    with pytest.raises(ValueError, match="ratio"):
        R.KWTA(0.0)


def test_kwta_model_and_dropout_keep_parameter_names():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    k = R.kwta_model(model, 0.5)
    assert isinstance(k[1], R.KWTA) and isinstance(model[1], nn.ReLU)  # a copy
    d = R.test_time_dropout(model, 0.5, scope=None).eval()
    assert list(d.state_dict()) == list(model.state_dict())
    x = torch.randn(64, 4)
    assert not torch.equal(d(x), d(x))  # random in eval mode
    z = R.sample_network(d, seed=3)
    assert torch.equal(z(x), z(x))  # one frozen draw is deterministic


def test_n_plus_one_data_and_trainer_give_n_plus_one_logits(synthetic, cache):
    extra = torch.rand(7, *synthetic.shape)
    data = R.n_plus_one_data(synthetic.train, extra, 10)
    assert len(data) == len(synthetic.train) + 7 and (data.y[-7:] == 10).all()
    recipe = zoo.Recipe("synthetic", "mnist_small", train={"epochs": 1, "lr": 1e-3, "batch_size": 64},
                        kind="n_plus_one", extra={"eps": 0.2, "steps": 2, "n_adv": 100})
    model = zoo.load(recipe).model
    assert model(synthetic.test.x[:3]).shape == (3, 11)


def test_pca_detector_on_a_constructed_case():
    """Clean data lives near a 3-d subspace of R^20; noise off the subspace is detected (AUROC 1),
    a perturbation inside it is not (AUROC ~ 1/2), and the projection keeps it there."""
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(20, 3, generator=gen))[0].T  # (3, 20)
    noise = lambda n: 0.01 * torch.randn(n, 20, generator=gen)  # noqa: E731
    clean = 0.5 + 0.1 * (torch.randn(400, 3, generator=gen) @ basis) + noise(400)
    det = R.PCADetector.fit(clean.view(400, 1, 4, 5), k=3)
    test = 0.5 + 0.1 * (torch.randn(200, 3, generator=gen) @ basis) + noise(200)
    off = test + 0.05 * torch.randn(200, 20, generator=gen)
    inside = test + 0.05 * (torch.randn(200, 3, generator=gen) @ basis)
    shape = (200, 1, 4, 5)
    s_clean = det.score(test.view(shape))
    assert R.auroc(s_clean, det.score(off.view(shape))) == 1.0
    assert abs(R.auroc(s_clean, det.score(inside.view(shape))) - 0.5) < 0.1
    proj = det.subspace_projection(5)(test.view(shape), off.view(shape))
    assert torch.allclose(det.score(proj), s_clean, atol=1e-3)
    assert R.auroc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 1.0
    assert R.auroc(torch.tensor([1.0]), torch.tensor([1.0])) == 0.5


def test_adversarial_training_raises_robust_accuracy(synthetic):
    def fresh():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 10))
    x, y = synthetic.test.x, synthetic.test.y
    eps = 0.1
    from fplab.train import train
    plain = fresh()
    train(plain, synthetic.train, epochs=8, lr=3e-3, progress=False)
    robust = fresh()
    R.adversarial_training(robust, synthetic.train, eps, method="pgd", steps=3, epochs=8, lr=3e-3,
                           batch_size=64, progress=False)
    acc = lambda m: robust_accuracy(m, pgd(m, x, y, eps, steps=10), y)  # noqa: E731
    assert acc(robust) > acc(plain) + 0.05
    with pytest.raises(ValueError, match="method"):
        R.adversarial_training(fresh(), synthetic.train, eps, method="free")


def test_fgsm_rs_training_runs_and_stays_finite(synthetic):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 10))
    losses = R.adversarial_training(model, synthetic.train, 0.1, method="fgsm_rs", epochs=2,
                                    batch_size=100, progress=False)
    assert len(losses) == 2 and all(l == l for l in losses) and not model.training
