"""Supervised training and evaluation of classifiers (teachers, and students outside an env)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from kd_envs.tasks.datasets import DatasetSplits, augment_batch

OPTIMIZERS = ("adam", "sgd")
DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that exists on this machine: ``"cpu"``, ``"cuda"``, ``"cuda:<n>"`` or
    ``"mps"``. Anything else, or one this machine lacks, is a ``ValueError`` that names it and says what is
    here, before any tensor is moved."""
    if isinstance(device, bool) or not isinstance(device, (str, torch.device)):
        raise ValueError(f"device={device!r}; expected 'cpu', 'cuda', 'cuda:<n>' or 'mps'")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"device={device!r}: not a device torch knows; expected 'cpu', 'cuda', 'cuda:<n>' or "
                         "'mps'") from None  # fmt: skip
    if resolved.type not in DEVICE_TYPES:
        raise ValueError(f"device={device!r}; expected 'cpu', 'cuda', 'cuda:<n>' or 'mps'")
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device={device!r}: this machine has no CUDA device (torch.cuda.is_available() is "
                             "False); use device='cpu'")  # fmt: skip
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device={device!r}: this machine has {count} CUDA device{'s' if count > 1 else ''} "
                             f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")  # fmt: skip
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r}: MPS is not available on this machine "
                         "(torch.backends.mps.is_available() is False); use device='cpu'")  # fmt: skip
    if resolved.index is None and resolved.type != "cpu":
        # With its index, as the tensors put there report it: "cuda" is the current CUDA device, "mps" the one GPU.
        resolved = torch.device(resolved.type, torch.cuda.current_device() if resolved.type == "cuda" else 0)
    return resolved


@dataclass(frozen=True)
class TrainConfig:
    """How a network is trained: ``epochs`` over the training split in batches of ``batch_size``.

    ``sgd`` uses momentum 0.9 and a cosine schedule over all steps; ``adam`` a constant rate.
    """

    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 3e-3
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer={self.optimizer!r}: expected one of {OPTIMIZERS}")
        for field in ("epochs", "batch_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"TrainConfig.{field}={getattr(self, field)}: expected a positive integer")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr={self.lr}: expected a positive number")

    def make_optimizer(self, params, total_steps: int):
        """Returns ``(optimizer, scheduler or None)``."""
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay), None
        opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay, nesterov=True)
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    """Full batches only: every step sees exactly ``batch_size`` instances."""
    if num_samples < batch_size:
        raise ValueError(f"batch_size={batch_size} is larger than the {num_samples} training samples")
    return num_samples // batch_size


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predict_logits(model, x).argmax(1) == y).float().mean().item()


def train_classifier(
    model: nn.Module,
    data: DatasetSplits,
    config: TrainConfig,
    generator: torch.Generator,
    progress: bool = False,
    description: str = "training",
    device: str | torch.device = "cpu",
) -> list[float]:
    """Train ``model`` with cross-entropy on ``data``'s training split; returns validation accuracy
    after each epoch. Batch order and augmentation draw from ``generator`` (a CPU generator: the same draws
    on every device). On another ``device`` than the CPU the data, the model and the optimiser's state
    live there for the whole run (``model`` is moved there in place); only each epoch's validation
    accuracy comes back."""
    device = resolve_device(device)
    model.to(device)
    data = data.to(device)
    n = len(data.y_train)
    per_epoch = steps_per_epoch(n, config.batch_size)
    optimizer, scheduler = config.make_optimizer(model.parameters(), per_epoch * config.epochs)
    history = []
    bar = tqdm(range(config.epochs), desc=description, disable=not progress, unit="epoch")
    for _ in bar:
        model.train()
        order = torch.randperm(n, generator=generator)
        for step in range(per_epoch):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size].to(device)
            x = data.x_train[idx]
            if data.augment:
                x = augment_batch(x, generator)
            loss = F.cross_entropy(model(x), data.y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        history.append(accuracy(model, data.x_val, data.y_val))
        bar.set_postfix(val_acc=f"{history[-1]:.3f}")
    model.eval()
    return history
