"""ResNet-18 for 32x32 images, post-activation (the ANP code's) and pre-activation.

:class:`ResNet18` is the network of the ANP paper's benchmark and public code (full profile): the
CIFAR variant of He et al. (2016), ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with a
1x1 conv + BatchNorm shortcut where the shape changes: 20 BatchNorm layers, 4,800 BN neurons.

:class:`PreActResNet18` (He et al., 2016, "Identity Mappings in Deep Residual Networks"). A pre-activation block computes
``x + F(x)`` with ``F = conv(relu(bn(conv(relu(bn(x))))))``: BatchNorm and ReLU come *before*
each convolution, so the identity path stays clean from input to output. The CIFAR variant has a
3x3 stem (no 7x7 conv, no max-pool), four stages of two blocks with 64, 128, 256, 512 channels
(stride 2 at the start of stages 2-4, with a 1x1 conv shortcut when the shape changes), then
BatchNorm + ReLU, global average pooling and one linear layer.

The head is ``classifier`` (a ``Sequential`` ending in the ``nn.Linear``), like the course's
other networks, so :mod:`fplab.zoo` finds the number of classes the same way.
"""

from __future__ import annotations

from torch import nn


class BasicBlock(nn.Module):
    """``out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, shortcut = 1x1 conv + BN."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 images (the ANP code's): 3x3 stem conv + BN + ReLU, 4 stages x 2 blocks
    (64, 128, 256, 512 channels), global average pooling, one linear layer."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, widths=(64, 128, 256, 512)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        stages, channels = [], widths[0]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(channels, width, stride), BasicBlock(width, width)))
            channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                        nn.Linear(channels, num_classes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.classifier(self.layer4(self.layer3(self.layer2(self.layer1(out)))))


class PreActBlock(nn.Module):
    """``out = shortcut(x) + conv2(relu(bn2(conv1(relu(bn1(x))))))``."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Conv2d(in_channels, channels, 1, stride, bias=False)

    def forward(self, x):
        pre = self.relu1(self.bn1(x))
        # As in the paper, a projection shortcut reads the pre-activated input.
        skip = self.shortcut(pre) if self.shortcut is not None else x
        out = self.conv1(pre)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + skip


class PreActResNet18(nn.Module):
    """PreAct-ResNet-18 for 32x32 images: stem, 4 stages x 2 blocks, BN-ReLU, pool, linear."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, widths=(64, 128, 256, 512)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages, channels = [], widths[0]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(PreActBlock(channels, width, stride),
                                        PreActBlock(width, width, 1)))
            channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                        nn.Linear(channels, num_classes))

    def forward(self, x):
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.classifier(self.relu(self.bn(out)))
