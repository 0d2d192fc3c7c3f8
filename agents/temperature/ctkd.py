"""CTKD: *Curriculum Temperature for Knowledge Distillation* (Li et al., AAAI 2023) on TemperatureKD-v0.

CTKD learns the distillation temperature together with the student, adversarially: the temperature
module's parameters θ receive the KD loss's gradient through a gradient-reversal layer of weight λ, so
the student descends the loss while θ ascends it ("hard" temperatures), and λ follows a cosine
curriculum from 0 to −1 (easy to hard):

    λ(e) = λ_min + (λ_max − λ_min)·(1 + cos(π·min(e, E) / E)) / 2,   e = 1, 2, … the epoch,

with the authors' CIFAR script's λ_max = 0, λ_min = −1, E = 10 (``decay_max``, ``decay_min``,
``decay_loops``; repository zhengli97/CTKD, ``train_student.py`` ``CosineDecay``), and the temperature
T = t_start + t_range·sigmoid(θ-output).

On TemperatureKD-v0 the env trains the student with the temperatures this policy gives; the policy
reads the coming batch's logits (``env.batch_logits()``: the same forward pass the student's update
uses) and updates θ by the reversed gradient of the env's own KD term α·mean_i T_i²·KL_i, which is the
gradient θ gets in CTKD's joint step, since the student's update sees T only as a value. Where ours
differs from the authors' code, and why:

* the temperature lies in (1, 9.9), not their (1, 21) (``t_start=1, t_end=20``): the env's action
  space maps to T ∈ (0, 10);
* θ has its own optimiser with the authors' settings, SGD with lr 0.05, momentum 0.9 and weight decay
  5e-4 (theirs is the student's own SGD; our student trains with Adam). SGD keeps the curriculum's
  meaning: θ's step is proportional to λ, where Adam would normalise λ's scale away and move θ as fast
  in the first epoch (λ ≈ −0.02) as at λ = −1. Their step decay of the rate (×0.1 at epochs 150, 180,
  210 of 240) is not applied;
* the global θ starts at 1, as theirs (T = 1 + 8.9·sigmoid(1) ≈ 7.5 at the start);
* the instance-wise module is not in the authors' repository; the paper describes a 2-layer MLP on
  the two networks' predictions, which is ours: [softmax(teacher), softmax(student)] → 64 →
  LeakyReLU(0.2) → 1 → T = t_start + t_range·sigmoid(·), initialised from the evaluation seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.temperature.policies import ACTION_MODES, env_actions
from kd_envs.losses import kd_loss


def cosine_reversal_weight(epoch: int, loops: int = 10, weight_max: float = 0.0, weight_min: float = -1.0) -> float:
    """λ at ``epoch`` (counted from 1) of CTKD's cosine curriculum (the authors' ``CosineDecay``)."""
    e = min(epoch, loops)
    return weight_min + (weight_max - weight_min) * (math.cos(e * math.pi / loops) + 1.0) / 2.0


class _GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by λ (the authors' GRL: λ ≤ 0 reverses it)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.weight * grad, None


def gradient_reversal(x: torch.Tensor, weight: float) -> torch.Tensor:
    return _GradientReversal.apply(x, weight)


class GlobalTemperature(nn.Module):
    """One learnable value for every instance (the authors' ``Global_T``, initialised at 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.ones(1))

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return self.value.expand(student_logits.shape[0])


class InstanceTemperature(nn.Module):
    """A 2-layer MLP from both networks' predictions to one raw value per instance."""

    def __init__(self, num_classes: int, hidden: int = 64, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * num_classes, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))
        with torch.no_grad():  # seeded init: the policy's only randomness
            for layer in (self.net[0], self.net[2]):
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        x = torch.cat([F.softmax(teacher_logits, dim=1), F.softmax(student_logits, dim=1)], dim=1)
        return self.net(x).squeeze(1)


@dataclass
class CTKDPolicy:
    """CTKD as a TemperatureKD-v0 policy (see the module docstring). Deterministic given the episode's
    seed: ``seed(s)`` re-creates the module and its optimiser before each episode.

    ``temperature_module`` is the learnable temperature (:class:`GlobalTemperature` or
    :class:`InstanceTemperature`, its parameter θ), None until the first ``seed``."""

    name: str
    instance_wise: bool = False
    t_start: float = 1.0
    t_range: float = 8.9
    decay_loops: int = 10
    weight_max: float = 0.0
    weight_min: float = -1.0
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    action_scale: float = 6.0
    env_overrides: dict[str, Any] = field(default_factory=dict)
    action: str = "temperature"

    def __post_init__(self) -> None:
        if self.action not in ACTION_MODES:
            raise ValueError(f"{self.name}: action={self.action!r}; expected one of {ACTION_MODES}")
        if not (0.0 < self.t_start and self.t_start + self.t_range < 10.0 and self.t_range > 0):
            raise ValueError(f"t_start={self.t_start}, t_range={self.t_range}: T must stay inside (0, 10)")
        self._env = None
        self.temperature_module: nn.Module | None = None

    def attach(self, env) -> None:
        """Bind to the unwrapped TemperatureKD env whose batches this policy reads."""
        self._env = env

    def seed(self, seed: int) -> None:
        if self._env is None:
            raise RuntimeError(f"{self.name}: attach(env) before seed(); CTKD reads the env's batch logits")
        generator = torch.Generator().manual_seed(int(seed))
        num_classes = self._env.task.data.num_classes
        if self.instance_wise:
            self.temperature_module: nn.Module = InstanceTemperature(num_classes, generator=generator)
        else:
            self.temperature_module = GlobalTemperature()
        self._optimizer = torch.optim.SGD(self.temperature_module.parameters(), lr=self.lr, momentum=self.momentum,
                                          weight_decay=self.weight_decay)  # fmt: skip
        self._step = 0

    def reversal_weight(self) -> float:
        epoch = self._env.options.warmup_epochs + self._step // self._env.steps_per_epoch + 1
        return cosine_reversal_weight(epoch, self.decay_loops, self.weight_max, self.weight_min)

    def predict(self, observation: np.ndarray, state=None, episode_start=None, deterministic: bool = True):
        if self.temperature_module is None:
            raise RuntimeError(f"{self.name}: call seed(evaluation_seed) before predict()")
        student_logits, teacher_logits = self._env.batch_logits()
        raw = gradient_reversal(self.temperature_module(student_logits, teacher_logits), self.reversal_weight())
        temperature = self.t_start + self.t_range * torch.sigmoid(raw)
        # θ's step in CTKD's joint update: the student's loss term that depends on T, through the GRL.
        loss = self._env.options.kd_weight * kd_loss(student_logits, teacher_logits, temperature)
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer.step()
        self._step += 1
        return env_actions(temperature.detach().numpy(), None, self.action_scale, self.action), state
