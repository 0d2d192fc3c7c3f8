"""Distillation losses as pure functions of tensors; weighting and bookkeeping stay outside them.

* :func:`kd_loss`: Hinton et al.'s soft-target loss with one temperature per instance;
* :func:`logit_l2_loss`: squared L2 between logits (N2N, Ba & Caruana);
* :func:`nmd_loss`: the neuron-manifold feature loss;
* :func:`distillation_losses` + :class:`LossWeights`: the named terms of one training step and their
  weighted total, for logging term by term.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float | torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """T_i² · KL(softmax(t_i / T_i) ‖ softmax(s_i / T_i)) for each instance i.

    ``temperature`` is a scalar or a tensor of shape (B,), one temperature per instance. The T² factor
    keeps the gradient's scale independent of T (Hinton et al. 2015, §2). ``reduction`` is ``"mean"``
    over the batch or ``"none"`` for the (B,) per-instance values.
    """
    temperature = torch.as_tensor(temperature, dtype=student_logits.dtype, device=student_logits.device)
    if temperature.dim() == 0:
        temperature = temperature.expand(student_logits.shape[0])
    if temperature.shape != student_logits.shape[:1]:
        raise ValueError(
            f"temperature has shape {tuple(temperature.shape)}; expected a scalar or ({student_logits.shape[0]},)"
        )
    t = temperature[:, None]
    log_p_student = F.log_softmax(student_logits / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
    per_instance = kl * temperature**2
    if reduction == "none":
        return per_instance
    if reduction == "mean":
        return per_instance.mean()
    raise ValueError(f"reduction={reduction!r}: expected 'mean' or 'none'")


def logit_l2_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ‖s_i − t_i‖² (squared L2 distance between logit vectors)."""
    return (student_logits - teacher_logits).pow(2).sum(dim=1).mean()


def manifold_projection(features: torch.Tensor, dim: int) -> torch.Tensor:
    """The batch's features (B, ...) centred on their mean and projected onto their top-``dim`` right
    singular directions: the linear feature manifold, shape (B, min(dim, B, D)).

    The directions are treated as constants of the step (detached): gradients flow through the
    features, not through the SVD, whose backward is unstable when singular values nearly repeat.
    """
    x = features.flatten(1)
    x = x - x.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(x.detach(), full_matrices=False)
    return x @ vh[:dim].T


def manifold_geometry(projected: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pairwise distances between the projected instances, divided by their mean: a (B, B) matrix
    that depends neither on a rotation of the feature space nor on its width or scale."""
    dist = torch.cdist(projected, projected)
    off_diagonal = dist.shape[0] * (dist.shape[0] - 1)
    return dist / (dist.sum() / max(off_diagonal, 1) + eps)


def nmd_loss(
    student_features: Sequence[torch.Tensor],
    teacher_features: Sequence[torch.Tensor],
    dim: int = 8,
    stage_weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Neuron-manifold distillation: for each stage, project teacher and student features onto their
    own linear manifold (:func:`manifold_projection`) and compare the two batches' geometry
    (:func:`manifold_geometry`) by mean squared difference; the weighted sum over stages.

    ``stage_weights`` defaults to 1, 1/2, 1/4, … from the shallowest stage: shallow stages weigh more.
    """
    if len(student_features) != len(teacher_features):
        raise ValueError(
            f"nmd_loss got {len(student_features)} student stages and {len(teacher_features)} teacher stages"
        )
    if stage_weights is None:
        stage_weights = [0.5**i for i in range(len(student_features))]
    if len(stage_weights) != len(student_features):
        raise ValueError(f"stage_weights has {len(stage_weights)} entries for {len(student_features)} stages")
    total = student_features[0].new_zeros(())
    for weight, fs, ft in zip(stage_weights, student_features, teacher_features):
        gs = manifold_geometry(manifold_projection(fs, dim))
        gt = manifold_geometry(manifold_projection(ft.detach(), dim))
        total = total + weight * (gs - gt).pow(2).mean()
    return total


@dataclass(frozen=True)
class LossWeights:
    """Weights of the terms of :func:`distillation_losses`; a term with weight 0 is not computed."""

    ce: float = 1.0
    kd: float = 0.0
    l2: float = 0.0
    nmd: float = 0.0

    def __post_init__(self) -> None:
        for name in ("ce", "kd", "l2", "nmd"):
            value = getattr(self, name)
            if not (value >= 0 and value < float("inf")):
                raise ValueError(f"LossWeights.{name}={value!r}: expected a finite number >= 0")


def distillation_losses(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    weights: LossWeights,
    temperature: float | torch.Tensor = 4.0,
    student_features: Sequence[torch.Tensor] = (),
    teacher_features: Sequence[torch.Tensor] = (),
    nmd_dim: int = 8,
) -> dict[str, torch.Tensor]:
    """The named loss terms of one step and ``"total"``, their weighted sum:
    total = w_ce·CE + w_kd·KD(T) + w_l2·L2 + w_nmd·NMD."""
    terms: dict[str, torch.Tensor] = {}
    if weights.ce:
        terms["ce"] = F.cross_entropy(student_logits, labels)
    if weights.kd:
        terms["kd"] = kd_loss(student_logits, teacher_logits, temperature)
    if weights.l2:
        terms["l2"] = logit_l2_loss(student_logits, teacher_logits)
    if weights.nmd:
        if not student_features:
            raise ValueError("LossWeights.nmd > 0 needs student_features and teacher_features")
        terms["nmd"] = nmd_loss(student_features, teacher_features, dim=nmd_dim)
    terms["total"] = sum(
        (getattr(weights, name) * value for name, value in terms.items()), student_logits.new_zeros(())
    )
    return terms
