"""The chapters' networks, built from small layer tables, and where their last conv layer is.

Each network is a :class:`ConvNet`: ``features`` (conv -> [BatchNorm] -> ReLU -> [max-pool]
blocks named ``conv1, bn1, relu1, pool1, ...``) then ``classifier`` (``fc1, relu, ..., fcK``).
The tables follow the source texts, scaled down to train in seconds on a CPU:

- ``mnist_cnn``: the BadNets MNIST baseline (conv 16x5x5, conv 32x5x5, fc 512, fc 10).
- ``traffic_cnn``: a three-block VGG-style network for 32x32 traffic signs.
- ``speech_cnn``: the speech network of the Fine-Pruning talk (five conv layers 96-256-384-384-256,
  fc 256-128-10), every width divided by 8 and applied to a 64x64 spectrogram.
- ``face_cnn``: a DeepID-like four-conv network for 64x64 faces; ``face_cnn_wide`` doubles its
  last two conv layers (64, 128 channels), for chapter 2's question whether width gives a
  backdoor room of its own.
- ``mnist_small``: conv 16x4x4 stride 2, conv 32x4x4 stride 2, fc 100: the network of Wong, Rice
  and Kolter (2020) for fast adversarial training on MNIST (chapter 6).
- ``*_bn`` variants put BatchNorm after every conv: they train in fewer epochs, and the ANP
  chapter perturbs BN channels. ``resnet18`` (:mod:`fplab.resnet`) is the ANP code's network
  (post-activation, 20 BatchNorm layers); ``preact_resnet18`` its pre-activation variant;
  ``resnet18_w16`` the same network at a quarter of the width (16, 32, 64, 128 channels: 1,200
  BN neurons, about 1/16 of the compute), the deep BatchNorm architecture at CPU cost.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .errors import check_choice

#: name -> (conv table [(out_channels, kernel, stride, padding, pool)], hidden fc widths)
ARCHITECTURES: dict[str, tuple[list[tuple[int, int, int, int, bool]], list[int]]] = {
    "mnist_cnn": ([(16, 5, 1, 0, True), (32, 5, 1, 0, True)], [512]),
    "traffic_cnn": ([(16, 3, 1, 1, True), (32, 3, 1, 1, True), (64, 3, 1, 1, True)], [128]),
    "speech_cnn": ([(12, 5, 2, 2, True), (32, 5, 1, 2, True), (48, 3, 1, 1, False),
                    (48, 3, 1, 1, False), (32, 3, 1, 1, True)], [256, 128]),
    "face_cnn": ([(16, 3, 1, 1, True), (32, 3, 1, 1, True), (48, 3, 1, 1, True),
                  (64, 3, 1, 1, False)], [160]),
    "face_cnn_wide": ([(16, 3, 1, 1, True), (32, 3, 1, 1, True), (64, 3, 1, 1, True),
                       (128, 3, 1, 1, False)], [160]),
    # the small CNN of Wong et al. 2020's fast adversarial training (chapter 6)
    "mnist_small": ([(16, 4, 2, 1, False), (32, 4, 2, 1, False)], [100]),
    # Spare capacity as the Fine-Pruning paper's networks have it (no BatchNorm, a wide last conv
    # layer, dropout before the classifier: :data:`DROPOUT`); issue 8's case-study networks.
    "face_cnn_wide2": ([(16, 3, 1, 1, True), (32, 3, 1, 1, True), (64, 3, 1, 1, True),
                        (256, 3, 1, 1, True)], [128]),
    "speech_cnn_wide": ([(32, 5, 2, 2, True), (64, 3, 1, 1, True), (256, 3, 1, 1, True)], [128]),
    "traffic_cnn_wide": ([(32, 3, 1, 1, True), (64, 3, 1, 1, True), (256, 3, 1, 1, True)], [128]),
}
#: Dropout probability before each fully connected layer (networks not listed have none).
DROPOUT: dict[str, float] = {"face_cnn_wide2": 0.5, "speech_cnn_wide": 0.5, "traffic_cnn_wide": 0.5}
#: The widths of the map of when pruning works (:mod:`fplab.capacity`): ``<base>_w<w>`` is network
#: ``base`` with its last conv layer ``w`` channels wide, everything else (dropout included) as
#: ``base``'s: the MNIST BadNet (``mnist_cnn_w32`` is ``mnist_cnn``'s table) and the speech case
#: study (its own ``speech_cnn_wide`` has 256).
CAPACITY_WIDTHS = (8, 16, 32, 64, 128, 256)
WIDENED = ("mnist_cnn", "speech_cnn_wide")
for _base in WIDENED:
    _convs, _hidden = ARCHITECTURES[_base]
    for _w in CAPACITY_WIDTHS:
        ARCHITECTURES[f"{_base}_w{_w}"] = (_convs[:-1] + [(_w, *_convs[-1][1:])], _hidden)
        if _base in DROPOUT:
            DROPOUT[f"{_base}_w{_w}"] = DROPOUT[_base]
del _base, _convs, _hidden, _w
#: The ResNet-18 variants (:class:`fplab.resnet.ResNet18`) -> their four stage widths.
RESNET18_WIDTHS = {"resnet18": (64, 128, 256, 512), "resnet18_w16": (16, 32, 64, 128)}
MODELS = (tuple(ARCHITECTURES) + tuple(f"{name}_bn" for name in ARCHITECTURES)
          + tuple(RESNET18_WIDTHS) + ("preact_resnet18",))


class ConvNet(nn.Module):
    """Conv blocks then a fully connected classifier, built from a layer table."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, convs, hidden,
                 batchnorm: bool = False, dropout: float = 0.0):
        super().__init__()
        layers, channels = OrderedDict(), in_shape[0]
        for i, (out, kernel, stride, padding, pool) in enumerate(convs, start=1):
            layers[f"conv{i}"] = nn.Conv2d(channels, out, kernel, stride, padding)
            if batchnorm:
                layers[f"bn{i}"] = nn.BatchNorm2d(out)
            layers[f"relu{i}"] = nn.ReLU()
            if pool:
                layers[f"pool{i}"] = nn.MaxPool2d(2)
            channels = out
        self.features = nn.Sequential(layers)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *in_shape)).numel()
        head, width = OrderedDict(flatten=nn.Flatten()), flat
        for i, units in enumerate(hidden, start=1):
            if dropout:  # no parameters: the state_dict keys of every network stay as they were
                head[f"drop{i}"] = nn.Dropout(dropout)
            head[f"fc{i}"] = nn.Linear(width, units)
            head[f"relu_fc{i}"] = nn.ReLU()
            width = units
        if dropout:
            head[f"drop{len(hidden) + 1}"] = nn.Dropout(dropout)
        head[f"fc{len(hidden) + 1}"] = nn.Linear(width, num_classes)
        self.classifier = nn.Sequential(head)

    def forward(self, x):
        return self.classifier(self.features(x))


def build_model(name: str, in_shape, num_classes: int, seed: int | None = None) -> nn.Module:
    """Network ``name`` (see :data:`MODELS`) for inputs ``in_shape`` (C, H, W)."""
    check_choice("model", name, MODELS)
    if seed is not None:
        torch.manual_seed(seed)
    if name in RESNET18_WIDTHS:  # the ANP code's network, in its own module
        from .resnet import ResNet18
        return ResNet18(in_channels=in_shape[0], num_classes=num_classes,
                        widths=RESNET18_WIDTHS[name])
    if name == "preact_resnet18":
        from .resnet import PreActResNet18
        return PreActResNet18(in_channels=in_shape[0], num_classes=num_classes)
    base = name.removesuffix("_bn")
    convs, hidden = ARCHITECTURES[base]
    return ConvNet(tuple(in_shape), num_classes, convs, hidden, batchnorm=name.endswith("_bn"),
                   dropout=DROPOUT.get(base, 0.0))


def last_conv_layer(model: nn.Module) -> str:
    """Qualified name of the last ``nn.Conv2d`` in ``model`` (the layer the pruning defense prunes)."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer")
    return names[-1]


def channel_layer(model: nn.Module, conv_name: str) -> str:
    """The module whose output holds the conv layer's channels as the next ReLU sees them.

    That is the BatchNorm right after ``conv_name`` when there is one, else the conv itself.
    Activation statistics and channel masks hook this module.
    """
    modules = dict(model.named_modules())
    check_choice("layer", conv_name, [n for n, m in modules.items() if isinstance(m, nn.Conv2d)])
    names = list(modules)
    following = names[names.index(conv_name) + 1] if names.index(conv_name) + 1 < len(names) else None
    if following and isinstance(modules[following], nn.BatchNorm2d):
        return following
    return conv_name


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy (defenses work on copies, never on a cached model)."""
    import copy
    return copy.deepcopy(model)
