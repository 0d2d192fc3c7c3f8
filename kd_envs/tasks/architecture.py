"""Architectures as data: a small layer spec that compiles to a torch module, and the two edits of
network-to-network compression (Ashok et al., "N2N Learning", ICLR 2018): removing layers and
shrinking the width of the ones that remain.

An :class:`Architecture` is a sequence of :class:`LayerSpec` (each a conv -> BatchNorm -> ReLU
[-> max pool] or a linear -> ReLU layer) followed by a fixed head (global average pooling where the
input still has a spatial extent, then a linear classifier), plus residual blocks given as inclusive
``(first, last)`` layer spans. A block adds its input to the output of its last layer before that
layer's ReLU, through the identity where the shapes agree and a 1x1 conv + BatchNorm projection
where they do not (He et al.'s option B), so any removal or shrinkage leaves a network whose shapes
connect, unless the spatial extent runs out (:class:`InvalidArchitecture`).

Inputs of shape ``(L,)`` feed 1-D convs with one channel (mnist1d), ``(C, H, W)`` 2-D convs (CIFAR);
linear layers flatten their input, and after conv layers they see the globally pooled channels.

The model families' specs are in :mod:`kd_envs.tasks.models` (:func:`~kd_envs.tasks.models.architecture_of`);
this module knows nothing of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LAYER_KINDS = ("linear", "conv")
# The paper's layer descriptor x_t (type, kernel size, stride, padding, outputs, skip start, skip end),
# with the max-pool size after the layer appended (1 when none) so VGG's pools are visible too.
DESCRIPTOR_FIELDS = ("kind", "kernel_size", "stride", "padding", "outputs", "skip_start", "skip_end", "pool")


class InvalidArchitecture(ValueError):
    """The layers cannot be connected (e.g. the spatial extent shrinks below one element)."""


@dataclass(frozen=True)
class LayerSpec:
    """One layer: ``conv`` is Conv(bias-free) -> BatchNorm -> ReLU [-> MaxPool(``pool``)], ``linear`` is
    Linear -> ReLU. ``outputs`` is the channels (conv) or units (linear)."""

    kind: str
    outputs: int
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    pool: int = 1

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"LayerSpec.kind={self.kind!r}: expected one of {LAYER_KINDS}")
        for name in ("outputs", "kernel_size", "stride", "pool"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"LayerSpec.{name}={value!r}: expected a positive integer")
        if not isinstance(self.padding, (int, np.integer)) or self.padding < 0:
            raise ValueError(f"LayerSpec.padding={self.padding!r}: expected a non-negative integer")
        if self.kind == "linear" and (self.kernel_size, self.stride, self.padding, self.pool) != (1, 1, 0, 1):
            raise ValueError(f"a linear layer has no kernel, stride, padding or pool; got {self}")


@dataclass(frozen=True)
class Architecture:
    """A network to build: ``layers`` then the head, with ``residual_blocks`` as inclusive
    ``(first, last)`` spans of conv layers (disjoint, in order)."""

    input_shape: tuple[int, ...]
    num_classes: int
    layers: tuple[LayerSpec, ...]
    residual_blocks: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "residual_blocks", tuple((int(a), int(b)) for a, b in self.residual_blocks))
        if len(self.input_shape) not in (1, 3) or min(self.input_shape) < 1:
            raise ValueError(f"Architecture.input_shape={self.input_shape}: expected (L,) or (C, H, W)")
        if self.num_classes < 2:
            raise ValueError(f"Architecture.num_classes={self.num_classes}: expected at least 2")
        seen_linear = False
        for i, layer in enumerate(self.layers):
            if layer.kind == "linear":
                seen_linear = True
            elif seen_linear:
                raise ValueError(f"layer {i} is a conv after a linear layer; convs must come first")
        previous_last = -1
        for first, last in self.residual_blocks:
            if not previous_last < first <= last < len(self.layers):
                raise ValueError(
                    f"residual block ({first}, {last}): blocks must be in order, disjoint and within the "
                    f"{len(self.layers)} layers"
                )
            if any(self.layers[i].kind != "conv" for i in range(first, last + 1)):
                raise ValueError(f"residual block ({first}, {last}) spans a linear layer; only convs may")
            previous_last = last

    # ---- the two edits -------------------------------------------------------------------------
    def remove_layers(self, keep: Sequence[bool]) -> Architecture:
        """The architecture with only the layers where ``keep`` is true. A residual block keeps the
        layers left inside its span (and vanishes with the last of them); the neighbours' widths follow
        because each layer's input width is whatever precedes it."""
        if len(keep) != len(self.layers):
            raise ValueError(f"keep has {len(keep)} entries for {len(self.layers)} layers")
        new_index, kept = {}, []
        for i, (layer, k) in enumerate(zip(self.layers, keep)):
            if k:
                new_index[i] = len(kept)
                kept.append(layer)
        blocks = []
        for first, last in self.residual_blocks:
            inside = [new_index[i] for i in range(first, last + 1) if i in new_index]
            if inside:
                blocks.append((inside[0], inside[-1]))
        return replace(self, layers=tuple(kept), residual_blocks=tuple(blocks))

    def shrink(self, factors: Sequence[float]) -> Architecture:
        """Each layer's width multiplied by its factor in (0, 1], rounded, at least 1."""
        if len(factors) != len(self.layers):
            raise ValueError(f"factors has {len(factors)} entries for {len(self.layers)} layers")
        for f in factors:
            if not 0.0 < f <= 1.0:
                raise ValueError(f"shrink factor {f}: expected a number in (0, 1]")
        layers = tuple(
            replace(layer, outputs=max(1, int(round(layer.outputs * f)))) for layer, f in zip(self.layers, factors)
        )
        return replace(self, layers=layers)

    # ---- what the agent sees -------------------------------------------------------------------
    def descriptors(self) -> np.ndarray:
        """The per-layer descriptor (:data:`DESCRIPTOR_FIELDS`), raw values, shape (layers, 8)."""
        starts = {first for first, _ in self.residual_blocks}
        ends = {last for _, last in self.residual_blocks}
        rows = [
            (LAYER_KINDS.index(layer.kind), layer.kernel_size, layer.stride, layer.padding, layer.outputs,
             float(i in starts), float(i in ends), layer.pool)
            for i, layer in enumerate(self.layers)
        ]  # fmt: skip
        return np.asarray(rows, dtype=np.float64).reshape(len(self.layers), len(DESCRIPTOR_FIELDS))

    def layer_shapes(self) -> list[tuple[int, ...]]:
        """Each layer's output shape (one sample); raises :class:`InvalidArchitecture` where the
        spatial extent, or a residual block's shortcut, cannot connect."""
        return _trace_shapes(self)

    def describe(self) -> str:
        """A one-line summary, e.g. ``conv16 conv16/2 [conv32 conv32] lin64``."""
        parts = []
        starts = {first for first, _ in self.residual_blocks}
        ends = {last for _, last in self.residual_blocks}
        for i, layer in enumerate(self.layers):
            name = f"{'conv' if layer.kind == 'conv' else 'lin'}{layer.outputs}"
            if layer.stride > 1:
                name += f"/{layer.stride}"
            if layer.pool > 1:
                name += f"+pool{layer.pool}"
            parts.append(("[" if i in starts else "") + name + ("]" if i in ends else ""))
        return " ".join(parts) if parts else "(no layers)"

    # ---- identity --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "layers": [asdict(layer) for layer in self.layers],
            "residual_blocks": [list(b) for b in self.residual_blocks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Architecture:
        return cls(
            input_shape=tuple(d["input_shape"]),
            num_classes=int(d["num_classes"]),
            layers=tuple(LayerSpec(**layer) for layer in d["layers"]),
            residual_blocks=tuple(tuple(b) for b in d.get("residual_blocks", ())),
        )

    def num_parameters(self) -> int:
        """Parameters of the compiled network (:class:`ArchitectureNet`), counted from the spec in
        microseconds: the reward and the budget masks of N2NCompress-v0 count thousands of students. The
        count depends on widths and strides only, so it exists even where the shapes cannot connect."""
        conv_dims = 1 if len(self.input_shape) == 1 else 2
        if self.layers and self.layers[0].kind == "conv":
            width = 1 if conv_dims == 1 else self.input_shape[0]
        else:
            width = int(np.prod(self.input_shape))
        block_of = dict(self.residual_blocks)
        total, block_start, block_input = 0, None, 0
        for i, layer in enumerate(self.layers):
            if i in block_of:
                block_start, block_input = i, width
            if layer.kind == "conv":  # no bias (BatchNorm follows): weight, then BatchNorm's scale and shift
                total += width * layer.outputs * layer.kernel_size**conv_dims + 2 * layer.outputs
            else:
                total += width * layer.outputs + layer.outputs
            width = layer.outputs
            if block_start is not None and i == block_of[block_start]:
                if _block_stride(self, block_start, i) != 1 or block_input != width:  # 1x1 conv + BatchNorm
                    total += block_input * width + 2 * width
                block_start = None
        return total + width * self.num_classes + self.num_classes


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _block_stride(arch: Architecture, first: int, last: int) -> int:
    """How much a residual block downsamples: the product of its layers' strides and pools."""
    return int(np.prod([arch.layers[j].stride * arch.layers[j].pool for j in range(first, last + 1)]))


def _trace_shapes(arch: Architecture) -> list[tuple[int, ...]]:
    shape = (1, *arch.input_shape) if len(arch.input_shape) == 1 else arch.input_shape
    block_last = dict(arch.residual_blocks)
    shapes: list[tuple[int, ...]] = []
    block_input, block_first = None, None
    for i, layer in enumerate(arch.layers):
        if i in block_last:
            block_input, block_first = shape, i
        if layer.kind == "conv":
            spatial = tuple(_conv_out(s, layer.kernel_size, layer.stride, layer.padding) for s in shape[1:])
            if layer.pool > 1:
                spatial = tuple(s // layer.pool for s in spatial)
            if min(spatial) < 1:
                raise InvalidArchitecture(f"layer {i} (conv) turns spatial size {shape[1:]} into {spatial}")
            shape = (layer.outputs, *spatial)
        else:
            shape = (layer.outputs,)
        if block_first is not None and i == block_last[block_first]:
            stride = _block_stride(arch, block_first, i)
            shortcut = tuple(_conv_out(s, 1, stride, 0) for s in block_input[1:])
            if shortcut != shape[1:]:
                raise InvalidArchitecture(
                    f"residual block ({block_first}, {i}): its output {shape} cannot meet the shortcut "
                    f"from {block_input} (stride {stride} gives spatial size {shortcut})"
                )
            block_input, block_first = None, None
        shapes.append(shape)
    return shapes


class _Layer(nn.Module):
    def __init__(self, layer: LayerSpec, in_features: int, conv_dims: int, activate: bool = True):
        super().__init__()
        self.activate = activate
        if layer.kind == "conv":
            conv = nn.Conv1d if conv_dims == 1 else nn.Conv2d
            norm = nn.BatchNorm1d if conv_dims == 1 else nn.BatchNorm2d
            self.op = conv(in_features, layer.outputs, layer.kernel_size, layer.stride, layer.padding, bias=False)
            self.norm = norm(layer.outputs)
            self.pool = (nn.MaxPool1d if conv_dims == 1 else nn.MaxPool2d)(layer.pool) if layer.pool > 1 else None
        else:
            self.op = nn.Linear(in_features, layer.outputs)
            self.norm = None
            self.pool = None

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        h = self.op(x)
        if self.norm is not None:
            h = self.norm(h)
        if residual is not None:  # He et al.: add before the last ReLU of the block
            h = h + residual
        h = F.relu(h)
        return self.pool(h) if self.pool is not None else h


class _Residual(nn.Module):
    def __init__(self, body: list[_Layer], shortcut: nn.Module | None):
        super().__init__()
        self.body = nn.ModuleList(body)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        h = x
        for layer in self.body[:-1]:
            h = layer(h)
        return self.body[-1](h, residual)


class ArchitectureNet(nn.Module):
    """The compiled :class:`Architecture`. ``forward(x, return_features=False)`` returns the logits,
    or ``(logits, features)`` with each unit's output (a layer, or a whole residual block)."""

    def __init__(self, arch: Architecture, check_shapes: bool = True):
        super().__init__()
        self.arch = arch
        if check_shapes:
            arch.layer_shapes()  # fail early, with the reason, where the spatial extent runs out
        conv_dims = 1 if len(arch.input_shape) == 1 else 2
        self.conv_first = bool(arch.layers) and arch.layers[0].kind == "conv"
        if self.conv_first:
            width = 1 if len(arch.input_shape) == 1 else arch.input_shape[0]
        else:
            width = int(np.prod(arch.input_shape))
        block_of = {first: last for first, last in arch.residual_blocks}
        units: list[nn.Module] = []
        i = 0
        while i < len(arch.layers):
            if i in block_of:
                last = block_of[i]
                body, in_width = [], width
                for j in range(i, last + 1):
                    body.append(_Layer(arch.layers[j], width, conv_dims))
                    width = arch.layers[j].outputs
                stride = _block_stride(arch, i, last)
                shortcut = None
                if stride != 1 or in_width != width:
                    conv = nn.Conv1d if conv_dims == 1 else nn.Conv2d
                    norm = nn.BatchNorm1d if conv_dims == 1 else nn.BatchNorm2d
                    shortcut = nn.Sequential(conv(in_width, width, 1, stride=stride, bias=False), norm(width))
                units.append(_Residual(body, shortcut))
                i = last + 1
            else:
                units.append(_Layer(arch.layers[i], width, conv_dims))
                width = arch.layers[i].outputs
                i += 1
        self.units = nn.ModuleList(units)
        self.head = nn.Linear(width, arch.num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, return_features: bool = False):
        if not self.conv_first:
            h = x.flatten(1)
        elif len(self.arch.input_shape) == 1 and x.dim() == 2:
            h = x.unsqueeze(1)  # (N, L) sequences are one-channel 1-D signals
        else:
            h = x
        features = []
        for unit in self.units:
            if h.dim() > 2 and isinstance(unit, _Layer) and unit.norm is None:
                h = h.flatten(2).mean(dim=2)  # a linear layer after convs sees the pooled channels
            h = unit(h)
            features.append(h)
        if h.dim() > 2:
            h = h.flatten(2).mean(dim=2)
        logits = self.head(h)
        return (logits, features) if return_features else logits


def build_architecture(arch: Architecture, generator: torch.Generator | None = None) -> ArchitectureNet:
    """Compile ``arch``; initial weights from ``generator`` when given (the global generator is left
    untouched), otherwise from torch's global generator."""
    if generator is None:
        return ArchitectureNet(arch)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ArchitectureNet(arch)
