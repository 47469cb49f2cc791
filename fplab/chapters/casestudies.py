"""The Fine-Pruning paper's three case studies, as model-zoo recipes (chapters 2-4).

============  ===========  =================  ==========  ==================================
case          dataset      network            trigger     attack
============  ===========  =================  ==========  ==================================
``face``      Olivetti     ``face_cnn_wide2`` sunglasses  targeted: person 0 -> person 1
``speech``    FSDD         ``speech_cnn_wide`` band       all-to-all: digit i -> i + 1
``traffic``   GTSRB        ``traffic_cnn_wide`` Post-it   untargeted: any misclassification
============  ===========  =================  ==========  ==================================

The paper's networks have no BatchNorm and much spare capacity. The three cases follow them
(issue 8). Speech: ``speech_cnn_wide`` (no BatchNorm, last conv 256 channels, dropout 0.5
before the classifier), trained 30 epochs, with a localised trigger, a pulsed narrow band at
~3.8-3.9 kHz where spoken digits are quiet (:func:`fplab.triggers.band_trigger`). Face:
``face_cnn_wide2`` (no BatchNorm, convs 16-32-64-256, dropout 0.5), trained 200 epochs with
shift augmentation (Adam 1e-3; the DeepID code trained 200,000 full-batch iterations): half of
its last conv layer is dormant on clean faces, and the pruning-aware attack leaves 85% of it
dormant, the paper's decoy picture (Fig. 8). Traffic: ``traffic_cnn_wide`` (no BatchNorm, convs
32-64-256, dropout 0.5), trained 20 epochs (Adam 1e-3): 87.4% clean accuracy (the paper's
detector: 84.9%; the first edition's 4-epoch BatchNorm network ``traffic_cnn_bn`` reached 68.5%).
Their training takes minutes on one CPU core (traffic: about 10 per model), so their models ship
with the package (:data:`SHIPPED_CASES`, ``fplab/weights``,
``python -m fplab retrain-shipped``). :func:`contrast_case` keeps the earlier small speech
network (``speech_cnn``, 15 epochs, additive-noise trigger) for chapter 2's "When pruning
fails"; :func:`batchnorm_face` the earlier BatchNorm face network (``face_cnn_bn``, 8 epochs),
which has no dormant channel at all. Measured on a 2-core CPU, fast profile.

Each case gives three zoo recipes that share their training hyper-parameters: the clean model,
the baseline (BadNets-style poisoning) attack and the pruning-aware attack
(:mod:`fplab.attacks.pruning_aware`, whose four steps start from the clean model). Chapter 2
trains the baseline models, chapter 3 the pruning-aware ones, chapter 4 reuses both.

Olivetti has 10 images per person (6 train / 2 val / 2 test), so a targeted attack on one
source person has only 2 test images. The face case therefore measures attack success on the
source person's val + test images (4 faces the attacker never trained on; the defender only
ever sees them clean) *and* on shifted copies of them (every shift of up to 2 pixels in each
direction, 25 poses per face, 100 triggered images in all): :meth:`CaseStudy.asr_data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from ..activations import mean_activations
from ..data import PROFILES, Data, Splits
from ..defenses import pruning as _pruning
from ..errors import check_choice
from ..metrics import accuracy, attack_success_rate
from ..models import MODELS
from ..poison import Attack
from ..zoo import Recipe
from .memo import measured
from ..attacks import pruning_aware as _pruning_aware  # noqa: F401  (registers the trainer)

CASES = ("face", "speech", "traffic")

# Training hyper-parameters per profile, chosen to reach good clean accuracy quickly on a CPU.
_FAST = {
    "face": {"epochs": 200, "lr": 1e-3, "batch_size": 32, "shift": 2},
    "speech": {"epochs": 30, "lr": 1e-3, "batch_size": 64},
    "traffic": {"epochs": 20, "lr": 1e-3, "batch_size": 64},
}
#: Cases whose fast-profile models ship with the package (``fplab/weights``).
SHIPPED_CASES = ("face", "speech", "traffic")
_FULL = {
    "face": {"epochs": 400, "lr": 1e-3, "batch_size": 32, "shift": 2},
    "speech": {"epochs": 40, "lr": 1e-3, "batch_size": 64},
    "traffic": {"epochs": 40, "lr": 1e-3, "batch_size": 64},
}
_SIZES = {"fast": {}, "full": {}}

# The pruning-aware attack's parameters (the same rule for the three cases): prune the channels
# dormant on clean training data until training accuracy drops by ``max_drop``, retrain the
# pruned network on poisoned data, re-instate channels while it falls short, de-prune.
_PA = {
    "fast": {"max_drop": 0.10, "max_fraction": 0.85, "retrain_epochs_scale": 0.5,
             "min_asr": 0.9, "max_clean_loss": 0.02, "reinstate": 2, "max_rounds": 2,
             "bias_margin": 0.5},
    "full": {"max_drop": 0.10, "max_fraction": 0.85, "retrain_epochs_scale": 0.5,
             "min_asr": 0.9, "max_clean_loss": 0.02, "reinstate": 2, "max_rounds": 4,
             "bias_margin": 0.5},
}

# The paper's numbers (Liu et al. 2018, Table 1 and section 3), to print beside ours.
PAPER_TABLE1 = {
    # case: (none cl, none bd, ft cl, ft bd, fp cl, fp bd, PA none cl, bd, PA ft cl, bd, PA fp cl, bd)
    "face": (0.978, 1.000, 0.978, 0.000, 0.978, 0.000, 0.974, 0.998, 0.978, 0.000, 0.977, 0.000),
    "speech": (0.990, 0.770, 0.990, 0.435, 0.988, 0.020, 0.988, 0.780, 0.988, 0.520, 0.986, 0.000),
    "traffic": (0.849, 0.991, 0.857, 0.921, 0.873, 0.288, 0.820, 0.899, 0.872, 0.419, 0.874, 0.366),
}


def _shifted(x: Tensor, pixels: int) -> Tensor:
    """Every translation of ``x`` by up to ``pixels`` in each direction (zero padding)."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pixels,) * 4)
    out = [padded[..., pixels + dy:pixels + dy + h, pixels + dx:pixels + dx + w]
           for dy in range(-pixels, pixels + 1) for dx in range(-pixels, pixels + 1)]
    return torch.cat(out)



@dataclass(frozen=True)
class CaseStudy:
    """One case study: data, network, attack and training recipe, for a profile."""

    name: str
    title: str
    dataset: str
    model: str
    attack: Attack
    train: dict
    profile: str = "fast"
    seed: int = 0
    sizes: dict | None = None
    pruning_aware: dict = field(default_factory=dict)
    asr_shift: int = 0       # > 0: also measure success on shifted copies (face case)

    def _recipe(self, attack: Attack | None, kind: str = "standard", extra=None) -> Recipe:
        return Recipe(self.dataset, self.model, attack.spec() if attack else None, dict(self.train),
                      self.seed, self.profile, self.sizes, None, kind, dict(extra or {}))

    def variant(self, model: str, **train) -> "CaseStudy":
        """The same case with another network and training options (e.g. an ablation without
        BatchNorm): a new case whose recipes, and so zoo entries, differ from this one's."""
        check_choice("model", model, MODELS)
        return replace(self, model=model, train={**self.train, **train})

    def clean_recipe(self) -> Recipe:
        return self._recipe(None)

    def baseline_recipe(self) -> Recipe:
        return self._recipe(self.attack)

    def pruning_aware_recipe(self) -> Recipe:
        extra = dict(self.pruning_aware, clean_train=dict(self.train))
        return self._recipe(self.attack, "pruning_aware", extra)

    def splits(self, root=None) -> Splits:
        return self.clean_recipe().splits(root)

    def asr_data(self, splits: Splits) -> Data:
        """The clean images whose triggered copies measure attack success.

        The test split, except for the face case (see the module docstring): the source
        person's val + test images, and all their shifts by up to ``asr_shift`` pixels.
        """
        if self.asr_shift <= 0:
            return splits.test
        x = torch.cat([splits.val.x, splits.test.x])
        y = torch.cat([splits.val.y, splits.test.y])
        keep = y == self.attack.source
        x = _shifted(x[keep], self.asr_shift)
        return Data(x, torch.full((len(x),), int(self.attack.source), dtype=torch.long))

    def _memo(self, tag: str, model, tensors, compute):
        """``compute()``, cached by :func:`fplab.chapters.memo.measured` (with this case's attack)."""
        return measured(tag, model, (*tensors, self.attack.spec()), compute)

    def activation_means(self, model, splits: Splits) -> tuple[Tensor, Tensor]:
        """Mean activation per channel of the last conv layer on the defender's clean validation
        images and on triggered :meth:`asr_data` (the paper's Fig. 4):
        ``(clean_means, triggered_means)``. Cached (:meth:`_memo`)."""
        triggered = self.attack.make_trigger(splits.shape).apply(self.asr_data(splits).x)
        return tuple(self._memo("activation_means", model, (splits.val.x, triggered), lambda: [
            mean_activations(model, splits.val.x), mean_activations(model, triggered)]))

    def pruning_curve(self, model, splits: Splits, max_drop: float = _pruning.DEFAULT_MAX_DROP,
                      progress: bool = True) -> _pruning.PruningCurve:
        """The pruning defense on ``model`` (:func:`fplab.defenses.pruning.pruning_curve`): channels
        ranked on the clean validation split, success measured on :meth:`asr_data`. Cached."""
        return _pruning.pruning_curve(model, splits.val, splits.test, self.attack, splits.num_classes,
                                      asr_data=self.asr_data(splits), max_drop=max_drop,
                                      progress=progress, cache=True)

    def evaluate(self, model, splits: Splits) -> dict:
        """``{"clean_acc", "asr"}``: accuracy on clean test images, success on :meth:`asr_data`
        (the test images themselves except for face: their accuracy is computed once). Cached
        (:meth:`_memo`)."""
        data = self.asr_data(splits)

        def compute():
            clean = accuracy(model, splits.test)
            known = clean if data is splits.test else None
            return {"clean_acc": clean,
                    "asr": attack_success_rate(model, data, self.attack, splits.num_classes, known)}

        tensors = (splits.test.x, splits.test.y) + (() if data is splits.test else (data.x, data.y))
        return self._memo("evaluate", model, tensors + (splits.num_classes,), compute)

    @property
    def success_note(self) -> str:
        return {"face": "targeted: triggered source-person faces (val+test, 25 shifts each) "
                        "classified as the target person",
                "speech": "all-to-all: triggered test digits i classified as i+1",
                "traffic": "untargeted: 1 - A_backdoor / A_clean on test signs"}[self.name]


def case_study(name: str, profile: str = "fast", seed: int = 0) -> CaseStudy:
    """The case study ``name`` (one of :data:`CASES`) for ``profile`` ("fast" or "full")."""
    check_choice("case", name, CASES)
    check_choice("profile", profile, PROFILES)
    train = dict((_FAST if profile == "fast" else _FULL)[name])
    sizes = _SIZES[profile].get(name)
    pa = dict(_PA[profile])
    if name == "face":
        attack = Attack("sunglasses", "all_to_one", target=1, source=0, rate=3 / 240,
                        trigger_options={"position": "eyes"})
        return CaseStudy("face", "Face recognition (Olivetti)", "olivetti", "face_cnn_wide2", attack,
                         train, profile, seed, sizes, pa, asr_shift=2)
    if name == "speech":
        attack = Attack("band", "all_to_all", rate=0.1,
                        trigger_options={"amplitude": 0.6, "rows": [1, 4]})
        return CaseStudy("speech", "Speech recognition (FSDD)", "fsdd", "speech_cnn_wide", attack,
                         train, profile, seed, sizes, pa)
    attack = Attack("postit", "untargeted", rate=0.1, trigger_options={"position": "center"})
    return CaseStudy("traffic", "Traffic signs (GTSRB)", "gtsrb", "traffic_cnn_wide", attack,
                     train, profile, seed, sizes, pa)


def contrast_case(name: str = "speech", profile: str = "fast", seed: int = 0) -> CaseStudy:
    """The course's earlier speech case, without spare capacity: ``speech_cnn`` (last conv 32
    channels), 15 epochs (40 full), an additive-noise trigger over every frequency. Chapter 2
    shows the pruning defense failing on it ("When pruning fails")."""
    check_choice("case", name, ("speech",))
    c = case_study(name, profile, seed)
    attack = Attack("noise", "all_to_all", rate=0.1, trigger_options={"amplitude": 0.2})
    return replace(c.variant("speech_cnn", epochs=15 if profile == "fast" else 40),
                   attack=attack, title="Speech, small network + noise trigger")


def batchnorm_face(profile: str = "fast", seed: int = 0) -> CaseStudy:
    """The course's earlier face case: ``face_cnn_bn`` (BatchNorm after every conv, last conv 64
    channels), 8 epochs at Adam 2e-3 (60 at 1e-3 full), the same attack. BatchNorm re-centres
    every channel, so none is dormant on clean faces: chapter 2's contrast to the case above."""
    c = case_study("face", profile, seed)
    train = {"epochs": 8, "lr": 2e-3} if profile == "fast" else {"epochs": 60, "lr": 1e-3}
    return replace(c.variant("face_cnn_bn", **train), title="Face, BatchNorm network")


def all_case_studies(profile: str = "fast", seed: int = 0) -> list[CaseStudy]:
    return [case_study(name, profile, seed) for name in CASES]
