"""RLKD's reward calibration and its losses, as pure functions of tensors (the paper's Eqs. for the
reward corrector C and the state updater U)."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


# -- the calibration as pure functions -------------------------------------------------------------
def calibrate(predicted: torch.Tensor, batch_rewards: torch.Tensor) -> torch.Tensor:
    """Per-instance rewards (N, B) that sum to each batch's reward (N,): C's predictions plus an equal
    share of what they miss."""
    n = predicted.shape[-1]
    return predicted + (batch_rewards - predicted.sum(dim=-1))[..., None] / n


def reward_corrector_loss(
    predicted: torch.Tensor, batch_rewards: torch.Tensor, alpha: float = 1.0, beta: float = 0.5
) -> torch.Tensor:
    """α·(Σ_i r̂_i − R)² + β/n·Σ_i (r̂_i − R/n)², averaged over the N batches of (N, B) predictions."""
    n = predicted.shape[-1]
    sum_error = (predicted.sum(dim=-1) - batch_rewards).pow(2)
    share_error = (predicted - batch_rewards[..., None] / n).pow(2).sum(dim=-1) / n
    return (alpha * sum_error + beta * share_error).mean()


def state_updater_loss(
    predicted_returns: torch.Tensor, returns: torch.Tensor, gates: torch.Tensor, sparsity: float = 5e-3
) -> torch.Tensor:
    """Squared error of the batches' predicted λ-returns plus ``sparsity`` times the mean gate (L1: the
    gates are positive)."""
    return F.mse_loss(predicted_returns, returns) + sparsity * gates.mean()


def instance_advantages(
    batch_rewards: np.ndarray,
    instance_rewards: np.ndarray,
    values: np.ndarray,
    episode_starts: np.ndarray,
    last_values: np.ndarray,
    last_dones: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """GAE per instance. Shapes: rewards, episode starts (T, E); instance rewards, values (T, E, B);
    last values (E, B); last dones (E,). The batch's GAE Ā_t runs on its reward R_t and mean value V̄_t;
    instance i adds its calibrated deviation: A_ti = Ā_t + (B·r_ti − R_t) − (V_ti − V̄_t). Returns the
    advantages and the critic's targets A + V, both (T, E, B)."""
    n_steps, n = len(batch_rewards), values.shape[-1]
    mean_values = values.mean(axis=-1)
    batch_advantages = np.zeros_like(batch_rewards)
    last_gae = np.zeros_like(batch_rewards[0])
    for t in reversed(range(n_steps)):
        if t == n_steps - 1:
            not_done, next_value = 1.0 - last_dones, last_values.mean(axis=-1)
        else:
            not_done, next_value = 1.0 - episode_starts[t + 1], mean_values[t + 1]
        delta = batch_rewards[t] + gamma * next_value * not_done - mean_values[t]
        last_gae = delta + gamma * gae_lambda * not_done * last_gae
        batch_advantages[t] = last_gae
    advantages = (
        batch_advantages[..., None]
        + (n * instance_rewards - batch_rewards[..., None])
        - (values - mean_values[..., None])
    )
    return advantages.astype(np.float32), (advantages + values).astype(np.float32)
