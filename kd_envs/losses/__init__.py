"""Distillation losses as pure functions of tensors; weighting and bookkeeping stay outside them.

* :func:`kd_loss`: Hinton et al.'s soft-target loss with one temperature per instance;
* :func:`logit_l2_loss`: squared L2 between logits (N2N, Ba & Caruana);
* :func:`nmd_loss`: the neuron-manifold feature loss;
* :func:`hint_loss` (FitNets, with :func:`hint_regressors`) and :func:`attention_loss` (attention
  transfer): the field's reference points for feature distillation, on the same stages;
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
    features, not through the decomposition, whose backward is unstable when singular values nearly
    repeat. They come from the eigenvectors of the smaller Gram matrix (B×B or D×D, in float64), which
    costs far less than an SVD of the B×D features when the stages are wide.
    """
    x = features.flatten(1)
    x = x - x.mean(dim=0, keepdim=True)
    k = min(dim, *x.shape)
    xd = x.detach().double()
    if x.shape[0] < x.shape[1]:
        eigenvalues, u = torch.linalg.eigh(xd @ xd.T)  # ascending
        u, singular = u[:, -k:].flip(1), eigenvalues[-k:].flip(0).clamp_min(0).sqrt()
        # Centring leaves rank <= B - 1: a direction with a (numerically) zero singular value is zeroed,
        # as the SVD's projection onto it is zero, rather than divided by its rounding error.
        inverse = torch.where(singular > singular[0] * 1e-6, 1.0 / singular.clamp_min(1e-300), 0.0)
        directions = (xd.T @ u) * inverse
    else:
        directions = torch.linalg.eigh(xd.T @ xd)[1][:, -k:].flip(1)
    return x @ directions.to(x.dtype)


def manifold_geometry(projected: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pairwise distances between the projected instances, divided by their mean: a (B, B) matrix
    that depends neither on a rotation of the feature space nor on its width or scale."""
    dist = torch.cdist(projected, projected)
    off_diagonal = dist.shape[0] * (dist.shape[0] - 1)
    return dist / (dist.sum() / max(off_diagonal, 1) + eps)


def _stage_weights(stage_weights: Sequence[float] | None, stages: int) -> Sequence[float]:
    """1, 1/2, 1/4, … from the shallowest stage (shallow stages weigh more), or the given weights."""
    weights = [0.5**i for i in range(stages)] if stage_weights is None else stage_weights
    if len(weights) != stages:
        raise ValueError(f"stage_weights has {len(weights)} entries for {stages} stages")
    return weights


def _check_stages(name: str, student_features: Sequence[torch.Tensor], teacher_features: Sequence[torch.Tensor]):
    if len(student_features) != len(teacher_features):
        raise ValueError(
            f"{name} got {len(student_features)} student stages and {len(teacher_features)} teacher stages"
        )


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
    _check_stages("nmd_loss", student_features, teacher_features)
    stage_weights = _stage_weights(stage_weights, len(student_features))
    total = student_features[0].new_zeros(())
    for weight, fs, ft in zip(stage_weights, student_features, teacher_features):
        gs = manifold_geometry(manifold_projection(fs, dim))
        gt = manifold_geometry(manifold_projection(ft.detach(), dim))
        total = total + weight * (gs - gt).pow(2).mean()
    return total


def hint_loss(
    regressed_student_features: Sequence[torch.Tensor],
    teacher_features: Sequence[torch.Tensor],
    stage_weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """FitNets' hint loss (Romero et al., 2015, eq. 3): the mean squared difference between each stage's
    teacher features and the student's, after the student's pass through a learned regressor to the
    teacher's width (:func:`hint_regressors`); the weighted sum over stages."""
    _check_stages("hint_loss", regressed_student_features, teacher_features)
    weights = _stage_weights(stage_weights, len(teacher_features))
    total = teacher_features[0].new_zeros(())
    for weight, fs, ft in zip(weights, regressed_student_features, teacher_features):
        if fs.shape != ft.shape:
            raise ValueError(f"hint_loss: regressed student features {tuple(fs.shape)} against the teacher's "
                             f"{tuple(ft.shape)}; the regressor must map to the teacher's shape")  # fmt: skip
        total = total + weight * (fs - ft.detach()).pow(2).mean()
    return total


def hint_regressors(student_features: Sequence[torch.Tensor], teacher_features: Sequence[torch.Tensor],
                    generator: torch.Generator | None = None) -> torch.nn.ModuleList:  # fmt: skip
    """One learned regressor per stage from the student's width to the teacher's (FitNets): a 1x1
    convolution for (B, C, L) or (B, C, H, W) features, a linear map for (B, C)."""
    _check_stages("hint_regressors", student_features, teacher_features)
    layers = []
    for fs, ft in zip(student_features, teacher_features):
        if fs.shape[2:] != ft.shape[2:]:
            raise ValueError(f"hint_regressors: student stage of shape {tuple(fs.shape[1:])} and teacher stage of "
                             f"{tuple(ft.shape[1:])} differ in extent: a 1x1 regressor cannot bridge them")  # fmt: skip
        conv = {2: torch.nn.Linear, 3: torch.nn.Conv1d, 4: torch.nn.Conv2d}[fs.dim()]
        # skip_init: no draw from torch's global generator; the weights come from ``generator`` below.
        kernel = {} if fs.dim() == 2 else {"kernel_size": 1}
        layer = torch.nn.utils.skip_init(conv, fs.shape[1], ft.shape[1], **kernel)
        with torch.no_grad():  # seeded like the student it belongs to
            bound = 1.0 / fs.shape[1] ** 0.5
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
        layers.append(layer)
    return torch.nn.ModuleList(layers)


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Zagoruyko & Komodakis's activation-based spatial attention: Σ_c |F_c|^p over channels,
    flattened over positions and L2-normalised, shape (B, positions)."""
    return F.normalize(features.abs().pow(p).sum(dim=1).flatten(1), dim=1)


def attention_loss(
    student_features: Sequence[torch.Tensor],
    teacher_features: Sequence[torch.Tensor],
    p: float = 2.0,
    stage_weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Attention transfer (Zagoruyko & Komodakis, 2017, eq. 2): for each stage, the L2 distance between
    the two networks' normalised attention maps (:func:`attention_map`), averaged over the batch; the
    weighted sum over stages (their β/2 is the caller's weight). Stages must have the same extent;
    the channel counts may differ."""
    _check_stages("attention_loss", student_features, teacher_features)
    weights = _stage_weights(stage_weights, len(teacher_features))
    total = teacher_features[0].new_zeros(())
    for weight, fs, ft in zip(weights, student_features, teacher_features):
        if fs.dim() < 3 or fs.shape[2:] != ft.shape[2:]:
            raise ValueError(f"attention_loss: stages of shape {tuple(fs.shape[1:])} and {tuple(ft.shape[1:])}; "
                             "expected feature maps with the same spatial extent")  # fmt: skip
        total = total + weight * (attention_map(fs, p) - attention_map(ft.detach(), p)).norm(dim=1).mean()
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
