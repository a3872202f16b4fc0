"""ResNet (18/34/50), VGG (11/13/16/19, batch-normalised) and AlexNet in plain PyTorch.

torchvision does not import beside the CPU build of torch here, so the three families are
written out. Small inputs (under 96 pixels, e.g. 32x32 CIFAR-style images) get the usual
small-image stems: a 3x3 stride-1 first convolution and no early max-pool for ResNet, 3x3
kernels for AlexNet, and VGG skips the pools that would shrink the map below 1x1. `width` scales
every layer's channels (64 is the published ResNet/VGG/AlexNet width).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

SMALL_INPUT = 96
RESNET_LAYOUT: dict[int, tuple[str, list[int]]] = {
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
}
VGG_LAYOUT: dict[int, list[int | str]] = {
    11: [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"],
    13: [1, 1, "M", 2, 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"],
    16: [1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"],
    19: [1, 1, "M", 2, 2, "M", 4, 4, 4, 4, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8, "M"],
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        nn.init.zeros_(self.bn2.weight)  # each block starts as the identity: trains stably
        self.shortcut = _shortcut(cin, planes, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: torch.Tensor = self.relu(out + self.shortcut(x))
        return result


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        nn.init.zeros_(self.bn3.weight)
        self.shortcut = _shortcut(cin, out_channels, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: torch.Tensor = self.relu(out + self.shortcut(x))
        return result


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    def __init__(
        self, depth: int, num_classes: int, width: int, image_size: int, dropout: float
    ) -> None:
        super().__init__()
        kind, counts = RESNET_LAYOUT[depth]
        block: Any = BasicBlock if kind == "basic" else Bottleneck
        if image_size < SMALL_INPUT:
            self.stem = nn.Sequential(
                nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, width, 7, 2, 3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(True),
                nn.MaxPool2d(3, 2, 1),
            )
        layers: list[nn.Module] = []
        cin = width
        for stage, count in enumerate(counts):
            planes = width * 2**stage
            for i in range(count):
                layers.append(block(cin, planes, 2 if stage > 0 and i == 0 else 1))
                cin = planes * block.expansion
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.layers(self.stem(x))).flatten(1)
        out: torch.Tensor = self.fc(self.dropout(x))
        return out


class VGG(nn.Module):
    """VGG with batch normalisation and a global-average-pooled two-layer head."""

    def __init__(
        self, depth: int, num_classes: int, width: int, image_size: int, dropout: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, size = 3, image_size
        for item in VGG_LAYOUT[depth]:
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            cout = width * int(item)
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(cin, cin),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(cin, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.pool(self.features(x)).flatten(1))
        return out


class AlexNet(nn.Module):
    """AlexNet's five convolutions and three dense layers (batch-normalised convolutions)."""

    def __init__(self, num_classes: int, width: int, image_size: int, dropout: float) -> None:
        super().__init__()
        c1, c2, c3, c4 = width, 3 * width, 6 * width, 4 * width
        small = image_size < SMALL_INPUT

        def conv(cin: int, cout: int, k: int, s: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, s, k // 2), nn.BatchNorm2d(cout), nn.ReLU(True)]

        pool: Any = (lambda: nn.MaxPool2d(2)) if small else (lambda: nn.MaxPool2d(3, 2))
        first = conv(3, c1, 3) if small else conv(3, c1, 11, 4)
        self.features = nn.Sequential(
            *first,
            pool(),
            *conv(c1, c2, 3 if small else 5),
            pool(),
            *conv(c2, c3, 3),
            *conv(c3, c4, 3),
            *conv(c4, c4, 3),
            pool(),
        )
        grid = 2 if small else 6
        hidden = 16 * width if small else 64 * width
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(c4 * grid * grid, hidden),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.pool(self.features(x)).flatten(1))
        return out


def build(architecture: dict[str, Any]) -> nn.Module:
    """The network an architecture record (saved in aijobs.json) describes."""
    kind = architecture["model_type"]
    n, width = int(architecture["num_classes"]), int(architecture["width"])
    size, dropout = int(architecture["image_size"]), float(architecture["dropout"])
    if kind == "resnet":
        return ResNet(int(architecture["depth"]), n, width, size, dropout)
    if kind == "vgg":
        return VGG(int(architecture["depth"]), n, width, size, dropout)
    if kind == "alexnet":
        return AlexNet(n, width, size, dropout)
    raise ValueError(f"unknown image model {kind!r}")
