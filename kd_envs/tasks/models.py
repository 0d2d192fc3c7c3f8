"""Model families for distillation tasks.

Every model's ``forward(x, return_features=False)`` returns the logits, or ``(logits, features)`` where
``features`` is a plain list with the output of each stage (shallow first), for feature distillation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

MODEL_FAMILIES = ("mlp", "cnn1d", "vgg", "resnet", "resnet1d")
CIFAR_RESNET_DEPTHS = (8, 14, 20, 32, 44, 56, 110)


@dataclass(frozen=True)
class ModelConfig:
    """What to build.

    ``family`` is one of :data:`MODEL_FAMILIES`. ``width`` is the hidden units (mlp) or channels
    (cnn1d; vgg's first stage, doubling per stage); ``depth`` the hidden layers (mlp), conv layers
    (cnn1d), stages of two convs and a 2x max pool (vgg), the CIFAR ResNet depth (one of
    :data:`CIFAR_RESNET_DEPTHS`), or the 1-D ResNet's depth 6n + 2 (resnet1d: a kernel-5 stem conv of
    ``width`` channels, then three stages of n two-conv residual blocks with ``width``, 2 ``width`` and
    4 ``width`` channels, the last two stages halving the length; 6n + 1 convs and the linear head, as
    He et al. count their CIFAR ResNets). vgg and resnet1d are compiled from their layer specs
    (:func:`kd_envs.tasks.architecture.architecture_of`); vgg takes 1-D or image inputs, resnet1d 1-D.
    """

    family: str = "cnn1d"
    width: int = 16
    depth: int = 3

    def __post_init__(self) -> None:
        if self.family not in MODEL_FAMILIES:
            raise ValueError(f"ModelConfig.family={self.family!r}: expected one of {MODEL_FAMILIES}")
        if self.family == "resnet":
            if self.depth not in CIFAR_RESNET_DEPTHS:
                raise ValueError(f"ModelConfig.depth={self.depth} for resnet: expected one of {CIFAR_RESNET_DEPTHS}")
        elif self.family == "resnet1d" and (self.depth < 8 or (self.depth - 2) % 6):
            raise ValueError(f"ModelConfig.depth={self.depth} for resnet1d: expected 6n + 2 (8, 14, 20, ...)")
        if self.family != "resnet":
            if self.width < 1:
                raise ValueError(f"ModelConfig.width={self.width}: expected a positive integer")
            if self.depth < 1:
                raise ValueError(f"ModelConfig.depth={self.depth}: expected a positive integer")


class MLP(nn.Module):
    """Fully connected ReLU network; each hidden layer is a stage."""

    def __init__(self, in_features: int, num_classes: int, width: int, depth: int):
        super().__init__()
        dims = [in_features] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        h = x.flatten(1)
        features = []
        for layer in self.hidden:
            h = F.relu(layer(h))
            features.append(h)
        logits = self.head(h)
        return (logits, features) if return_features else logits


class CNN1d(nn.Module):
    """1-D CNN for sequence inputs such as mnist1d (length 40).

    ``depth`` blocks of Conv1d(stride 2) -> BatchNorm -> ReLU, global average pooling, linear head.
    Each block is a stage.
    """

    def __init__(self, in_length: int, num_classes: int, width: int, depth: int):
        super().__init__()
        del in_length  # global pooling makes the network independent of the sequence length
        blocks = []
        in_ch = 1
        for i in range(depth):
            kernel = 5 if i == 0 else 3
            blocks.append(
                nn.Sequential(
                    nn.Conv1d(in_ch, width, kernel, stride=2, padding=kernel // 2, bias=False),
                    nn.BatchNorm1d(width),
                    nn.ReLU(inplace=True),
                )
            )
            in_ch = width
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        h = x.unsqueeze(1) if x.dim() == 2 else x
        features = []
        for block in self.blocks:
            h = block(h)
            features.append(h)
        logits = self.head(h.mean(dim=2))
        return (logits, features) if return_features else logits


class BasicBlock(nn.Module):
    """He et al.'s CIFAR BasicBlock with a 1x1 conv shortcut where the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet-``depth``: three stages of (depth-2)/6 BasicBlocks with 16/32/64 channels."""

    def __init__(self, depth: int, num_classes: int, in_channels: int = 3):
        super().__init__()
        if depth not in CIFAR_RESNET_DEPTHS:
            raise ValueError(f"CIFAR ResNet depth={depth}: expected one of {CIFAR_RESNET_DEPTHS}")
        blocks_per_stage = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages = []
        in_planes = 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            layers = []
            for b in range(blocks_per_stage):
                layers.append(BasicBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, return_features: bool = False):
        h = F.relu(self.bn1(self.conv1(x)))
        features = []
        for stage in self.stages:
            h = stage(h)
            features.append(h)
        logits = self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))
        return (logits, features) if return_features else logits


def build_model(
    config: ModelConfig, input_shape: tuple[int, ...], num_classes: int, generator: torch.Generator | None = None
) -> nn.Module:
    """Build a model for inputs of ``input_shape`` (one sample, no batch dimension).

    Initial weights are drawn from ``generator`` when given (so a seeded episode gets the same
    student), otherwise from torch's global generator.
    """
    if config.family == "mlp":
        in_features = 1
        for d in input_shape:
            in_features *= d
        make = lambda: MLP(in_features, num_classes, config.width, config.depth)  # noqa: E731
    elif config.family == "cnn1d":
        if len(input_shape) != 1:
            raise ValueError(f"cnn1d expects 1-D samples, got input shape {input_shape}")
        make = lambda: CNN1d(input_shape[0], num_classes, config.width, config.depth)  # noqa: E731
    elif config.family in ("vgg", "resnet1d"):
        from kd_envs.tasks.architecture import ArchitectureNet, architecture_of  # it builds on ModelConfig

        if config.family == "resnet1d" and len(input_shape) != 1:
            raise ValueError(f"resnet1d expects 1-D samples, got input shape {input_shape}")
        make = lambda: ArchitectureNet(architecture_of(config, input_shape, num_classes))  # noqa: E731
    else:
        if len(input_shape) != 3:
            raise ValueError(f"resnet expects (C, H, W) samples, got input shape {input_shape}")
        make = lambda: CifarResNet(config.depth, num_classes, in_channels=input_shape[0])  # noqa: E731
    if generator is None:
        return make()
    # Module constructors draw from the global generator; fork it so the caller's state is untouched.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
