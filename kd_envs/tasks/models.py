"""Model families for distillation tasks, each defined once.

``mlp``, ``cnn1d`` and ``resnet`` (He et al.'s CIFAR ResNet) are torch modules: their parameter names
and initial draws are those of the shipped and cached teachers and of the fingerprints that
leaderboard entries record. Their layer spec (:class:`~kd_envs.tasks.architecture.Architecture`, what
N2NCompress-v0 edits) is read off the built module by its ``architecture`` method, never written out a
second time. ``vgg`` and ``resnet1d`` are defined by their layer spec, compiled by
:class:`~kd_envs.tasks.architecture.ArchitectureNet`. :func:`architecture_of` gives any family's spec.

Every model's ``forward(x, return_features=False)`` returns the logits, or ``(logits, features)`` where
``features`` is a plain list with the output of each stage (shallow first), for feature distillation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from kd_envs.tasks.architecture import Architecture, ArchitectureNet, LayerSpec

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
    (:func:`architecture_of`); vgg takes 1-D or image inputs, resnet1d 1-D.
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

    def architecture(self, input_shape: tuple[int, ...]) -> Architecture:
        """This network as a layer spec: a linear layer per hidden layer."""
        layers = tuple(LayerSpec("linear", layer.out_features) for layer in self.hidden)
        return Architecture(input_shape, self.head.out_features, layers)


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

    def architecture(self, input_shape: tuple[int, ...]) -> Architecture:
        """This network as a layer spec: a conv layer per block."""
        return Architecture(input_shape, self.head.out_features, tuple(_conv_spec(block[0]) for block in self.blocks))


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

    def architecture(self, input_shape: tuple[int, ...]) -> Architecture:
        """This network as a layer spec: the stem conv, then each BasicBlock's two convs as a residual
        block (its shortcut is implied: a projection where the shape changes, as here)."""
        layers, blocks = [_conv_spec(self.conv1)], []
        for stage in self.stages:
            for block in stage:
                blocks.append((len(layers), len(layers) + 1))
                layers += [_conv_spec(block.conv1), _conv_spec(block.conv2)]
        return Architecture(input_shape, self.fc.out_features, tuple(layers), tuple(blocks))


def _conv_spec(conv: nn.Conv1d | nn.Conv2d) -> LayerSpec:
    """A bias-free conv followed by BatchNorm and ReLU, as a layer spec (square kernels only)."""
    return LayerSpec("conv", conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.padding[0])


def _vgg_architecture(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> Architecture:
    # VGG-style: stages of two 3x3 convs, the width doubling per stage, 2x max pooling after each.
    layers = []
    for stage in range(config.depth):
        width = config.width * 2**stage
        layers += [LayerSpec("conv", width, 3, 1, 1), LayerSpec("conv", width, 3, 1, 1, pool=2)]
    return Architecture(input_shape, num_classes, tuple(layers))


def _resnet1d_architecture(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> Architecture:
    # A 1-D ResNet for sequences: a kernel-5 stem, then three stages of (depth-2)/6 two-conv blocks
    # (width, 2 width, 4 width channels), the last two stages halving the length at their first conv.
    if len(input_shape) != 1:
        raise ValueError(f"resnet1d expects 1-D samples, got input shape {input_shape}")
    layers, blocks = [LayerSpec("conv", config.width, 5, 1, 2)], []
    for stage, stride in enumerate((1, 2, 2)):
        planes = config.width * 2**stage
        for b in range((config.depth - 2) // 6):
            blocks.append((len(layers), len(layers) + 1))
            layers += [LayerSpec("conv", planes, 3, stride if b == 0 else 1, 1), LayerSpec("conv", planes, 3, 1, 1)]
    return Architecture(input_shape, num_classes, tuple(layers), tuple(blocks))


# The families defined by their layer spec alone.
_SPEC_FAMILIES = {"vgg": _vgg_architecture, "resnet1d": _resnet1d_architecture}


def _construct(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if config.family in _SPEC_FAMILIES:
        return ArchitectureNet(_SPEC_FAMILIES[config.family](config, input_shape, num_classes))
    if config.family == "mlp":
        in_features = 1
        for d in input_shape:
            in_features *= d
        return MLP(in_features, num_classes, config.width, config.depth)
    if config.family == "cnn1d":
        if len(input_shape) != 1:
            raise ValueError(f"cnn1d expects 1-D samples, got input shape {input_shape}")
        return CNN1d(input_shape[0], num_classes, config.width, config.depth)
    if len(input_shape) != 3:
        raise ValueError(f"resnet expects (C, H, W) samples, got input shape {input_shape}")
    return CifarResNet(config.depth, num_classes, in_channels=input_shape[0])


def build_model(
    config: ModelConfig, input_shape: tuple[int, ...], num_classes: int, generator: torch.Generator | None = None
) -> nn.Module:
    """Build a model for inputs of ``input_shape`` (one sample, no batch dimension).

    Initial weights are drawn from ``generator`` when given (so a seeded episode gets the same
    student), otherwise from torch's global generator.
    """
    return build_seeded(lambda: _construct(config, input_shape, num_classes), generator)


def build_seeded(construct: Callable[[], nn.Module], generator: torch.Generator | None = None) -> nn.Module:
    """``construct()``, its initial draws seeded from ``generator`` when given (the global generator is left
    as it was: module constructors draw from it, so it is forked), else from the global generator."""
    if generator is None:
        return construct()
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return construct()


def architecture_of(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> Architecture:
    """The layer spec of the model :func:`build_model` builds: the definition itself for vgg and
    resnet1d, read off the module for the others (built on the meta device: nothing is allocated and
    no random number is drawn). A task's teacher can so be compressed layer by layer."""
    if config.family in _SPEC_FAMILIES:
        return _SPEC_FAMILIES[config.family](config, input_shape, num_classes)
    with torch.device("meta"):
        return _construct(config, input_shape, num_classes).architecture(input_shape)


def architecture_of_module(model: nn.Module, input_shape: tuple[int, ...]) -> Architecture:
    """The layer spec of a built model of one of the families (:func:`build_model`'s, with any weights, or a
    compiled :class:`~kd_envs.tasks.architecture.ArchitectureNet`), checked to have the module's parameter
    count. Any other module has no spec to read: ``ValueError`` saying so."""
    if isinstance(model, ArchitectureNet):
        arch = model.arch
    elif isinstance(model, (MLP, CNN1d, CifarResNet)):
        arch = model.architecture(tuple(input_shape))
    else:
        raise ValueError(
            f"a {type(model).__name__} is no model of the families {MODEL_FAMILIES} (built by "
            "kd_envs.tasks.build_model, or an ArchitectureNet): it has no layer spec to read"
        )
    if arch.num_parameters() != count_parameters(model):
        raise ValueError(f"the {type(model).__name__}'s layer spec has {arch.num_parameters()} parameters and the "
                         f"module {count_parameters(model)}: it is not the network its spec describes")  # fmt: skip
    return arch


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
