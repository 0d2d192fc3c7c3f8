"""TemperatureKD-v0: set one distillation temperature per instance of every training batch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch.nn import functional as F

from kd_envs.envs.arguments import (
    JsonTaskSpec,
    check_choice,
    check_device,
    check_folder,
    check_int,
    check_number,
    check_render_mode,
    is_int,
    kwarg_error,
)
from kd_envs.envs.rendering import chart_frame
from kd_envs.losses import attention_loss, hint_loss, hint_regressors, kd_loss, nmd_loss
from kd_envs.metrics import confident_prediction_report
from kd_envs.tasks import Task, TaskConfig, make_task, predict_logits, steps_per_epoch, task_or_config
from kd_envs.tasks.datasets import augment_batch
from kd_envs.tasks.task_sets import SPLITS, TaskInstance, load_task_set

REWARD_MEASURES = ("heldout", "batch")
OBSERVATIONS = ("paper", "extended")
ACTIONS = ("temperature", "temperature_weight")
DEFAULT_TASK = "mnist1d-cloud-edge"
EXPLORATION_MODES = ("none", "entropy_mixup", "entropy_mixup_authors")
FEATURE_LOSSES = ("nmd", "hint", "attention")
# The authors' purification (ITKD's code, utils/dataloader.py): the hard image's weight goes from 1.0
# to 0.7 by rank within the band.
AUTHORS_MIX_WEIGHTS = (1.0, 0.7)
MAX_TEMPERATURE = 10.0


def authors_purification(x: torch.Tensor, entropy_score: torch.Tensor) -> torch.Tensor:
    """The mixup of ITKD's public code (``utils/trainer.py`` ``on_train_epoch_end``,
    ``utils/dataloader.py``): instances ranked by ``entropy_score``, highest first; the k-th instance of
    the 80–90% band (confident) gets, in its own slot and with its own label,
    w_k·x_hard + (1 − w_k)·x_own, where x_hard is the k-th instance of the 10–20% band (uncertain,
    rank to rank) and w_k = 0.7 + 0.3·(M − k)/M over the band's M ranks. No instance is dropped; the
    others are unchanged. Returns the mixed copy of ``x``."""
    n = len(entropy_score)
    ranked = entropy_score.argsort(descending=True, stable=True)
    m = int(0.1 * n)
    easy, hard = ranked[int(0.8 * n) : int(0.8 * n) + m], ranked[int(0.1 * n) : int(0.1 * n) + m]
    first, last = AUTHORS_MIX_WEIGHTS
    w = last + (first - last) * (m - torch.arange(m, dtype=x.dtype, device=x.device)) / max(m, 1)
    w = w.view(-1, *([1] * (x.dim() - 1)))
    mixed = x.clone()
    mixed[easy] = w * x[hard] + (1 - w) * x[easy]
    return mixed


def action_to_temperature(action: torch.Tensor, action_scale: float) -> torch.Tensor:
    """T = 10 · sigmoid(action_scale · a): the paper's map from a raw action to a temperature in (0, 10)."""
    return MAX_TEMPERATURE * torch.sigmoid(action_scale * action)


def temperature_to_action(temperature: float, action_scale: float) -> float:
    """Inverse of :func:`action_to_temperature`, for fixed-temperature policies."""
    if not 0.0 < temperature < MAX_TEMPERATURE:
        raise ValueError(f"temperature={temperature}: expected a value in (0, {MAX_TEMPERATURE})")
    p = temperature / MAX_TEMPERATURE
    return math.log(p / (1.0 - p)) / action_scale


def teacher_confidence(teacher_logits: torch.Tensor) -> torch.Tensor:
    """The teacher's top-1 probability per instance, shape (B,)."""
    return F.softmax(teacher_logits, dim=1).max(dim=1).values


def batch_observation(student_logits: torch.Tensor, teacher_confidence: torch.Tensor) -> np.ndarray:
    """(teacher's top-1 probability, student's top-1 probability, 1 − (student's top-1 − top-2)),
    one row per instance; float32 of shape (B, 3). Top-2 is the second *largest* probability."""
    # In NumPy, from the two largest logits (softmax is monotone): this runs every step, and a few
    # NumPy calls on a (B, C) array cost less than the equivalent torch dispatches.
    z = student_logits.detach().cpu().numpy()  # on another device: the batch's logits come back, nothing else
    z_top2 = np.sort(z, axis=1)[:, :-3:-1]  # largest, second largest
    top1 = 1.0 / np.exp(z - z_top2[:, :1]).sum(axis=1)
    top2 = top1 * np.exp(z_top2[:, 1] - z_top2[:, 0])
    obs = np.empty((len(z), 3), dtype=np.float32)
    obs[:, 0], obs[:, 1], obs[:, 2] = teacher_confidence.cpu().numpy(), top1, 1.0 - (top1 - top2)
    return np.clip(obs, 0.0, 1.0, out=obs)


def action_to_weight(action: torch.Tensor) -> torch.Tensor:
    """w = (a + 1) / 2: a raw action in [−1, 1] to an instance's distillation weight in [0, 1]."""
    return (action + 1.0) / 2.0


def extended_columns(
    student_logits: torch.Tensor, labels: torch.Tensor, teacher_true_probability: torch.Tensor,
    teacher_agrees: torch.Tensor, progress: float,
) -> np.ndarray:  # fmt: skip
    """The four columns ``observation="extended"`` adds, float32 of shape (B, 4): training progress, the
    teacher's probability of the true label, whether the teacher's top-1 class is the label (0 or 1) and
    the student's probability of the true label."""
    z = student_logits.detach().cpu().numpy()
    z = z - z.max(axis=1, keepdims=True)
    student_true = np.exp(z[np.arange(len(z)), labels.cpu().numpy()]) / np.exp(z).sum(axis=1)
    out = np.empty((len(z), 4), dtype=np.float32)
    out[:, 0] = progress
    out[:, 1], out[:, 2], out[:, 3] = teacher_true_probability.cpu().numpy(), teacher_agrees.cpu().numpy(), student_true
    return np.clip(out, 0.0, 1.0, out=out)


@dataclass(frozen=True)
class _Options:
    """The env's kwargs after validation, the one place they are checked: errors name the kwarg, its value
    and what is allowed. Numbers are stored as Python floats, whatever real type they came as."""

    batch_size: int
    epochs: int
    ce_weight: float
    kd_weight: float
    student_lr: float
    reward_measure: str
    reward_set_size: int
    reward_epoch_scale: float
    warmup_epochs: int
    warmup_temperature: float
    exploration: str
    action_scale: float
    mixup_interval: int
    reward_interval: int
    feature_weight: float
    feature_loss: str
    observation: str = "paper"
    action: str = "temperature"
    cache_dir: str | Path | None = None
    data_root: str | Path | None = None
    render_mode: str | None = None
    device: str | torch.device = "cpu"

    def __post_init__(self) -> None:
        env_id = "TemperatureKD-v0"

        def bad(name: str, allowed: str) -> ValueError:
            return kwarg_error(env_id, name, getattr(self, name), allowed)

        for name in ("batch_size", "epochs", "reward_set_size", "mixup_interval", "reward_interval"):
            check_int(env_id, name, getattr(self, name), minimum=1)
        if not is_int(self.warmup_epochs) or not 0 <= self.warmup_epochs < self.epochs:
            raise bad("warmup_epochs", f"an integer in [0, epochs={self.epochs})")
        for name in ("ce_weight", "kd_weight", "feature_weight"):
            object.__setattr__(self, name, float(check_number(env_id, name, getattr(self, name), 0.0)))
        for name in ("student_lr", "reward_epoch_scale", "action_scale"):
            object.__setattr__(self, name, float(check_number(env_id, name, getattr(self, name), 0.0, low_open=True)))
        object.__setattr__(self, "warmup_temperature", float(check_number(
            env_id, "warmup_temperature", self.warmup_temperature, 0.0, MAX_TEMPERATURE, low_open=True)))  # fmt: skip
        check_choice(env_id, "reward_measure", self.reward_measure, REWARD_MEASURES)
        if self.reward_interval != 1 and self.reward_measure != "heldout":
            raise bad("reward_interval", "1 with reward_measure='batch' (the interval is the held-out measure's)")
        check_choice(env_id, "exploration", self.exploration, EXPLORATION_MODES)
        check_choice(env_id, "feature_loss", self.feature_loss, FEATURE_LOSSES)
        check_choice(env_id, "observation", self.observation, OBSERVATIONS)
        check_choice(env_id, "action", self.action, ACTIONS)
        check_folder(env_id, "cache_dir", self.cache_dir)
        check_folder(env_id, "data_root", self.data_root)
        check_render_mode(env_id, self.render_mode, TemperatureKDEnv.metadata["render_modes"])
        object.__setattr__(self, "device", check_device(env_id, self.device))


class TemperatureKDEnv(JsonTaskSpec, gym.Env):
    r"""
    ## Description
    An agent sets the distillation temperature of every instance of every training batch while a
    fresh student is distilled from a trained teacher (Zhang et al., *Instance Temperature Knowledge
    Distillation*, 2024). One episode is one distillation run of ``epochs`` epochs; one step is one
    training batch of ``batch_size`` instances (full batches only; the remainder of an epoch is
    skipped, as ``drop_last`` does).

    The default task, ``"mnist1d-cloud-edge"``, is a cloud–edge distillation: the teacher (a 1-D CNN
    64×3, shipped with the package, test accuracy 0.9795) learned from 8,000 mnist1d instances; the
    student (a 1-D CNN 32×3) has the first 1,000 of them with labels and learns the rest of what the
    teacher knows through distillation. A default episode is 40 epochs × 15 batches of 64 = 600 steps.
    There distillation pays and the temperature matters (docs/studies/temperature-kd.md: the sweep and
    the temperature response). ``task="mnist1d"`` is the first default (all 8,000 labelled, a 1-D CNN 8×2 student,
    30 epochs of 128), where cross-entropy alone wins.

    The student's forward pass that yields a batch's observation is the one its training step
    back-propagates through (the weights do not change in between). Measured against the plain
    distillation loop (``scripts/bench_temperature_kd.py``, default task): +2–16% per episode with
    ``reward_measure="batch"`` and +57–67% with the default held-out measure, whose extra eval-mode pass
    over the reward set is most of the cost (see ``reward_interval``).

    ## Action Space
    ``Box(-1, 1, (batch_size,), float32)``: one raw value per instance of the batch observed last,
    mapped to a temperature by T = 10 · sigmoid(``action_scale`` · a) ∈ (0, 10). With the default
    ``action_scale=6``: a = −1 → T ≈ 0.025, a = −0.366 → T = 1, a = −0.068 → T = 4, a = 0 → T = 5,
    a = 1 → T ≈ 9.98. :func:`action_to_temperature` and :func:`temperature_to_action` do the map.
    An action of another shape, of a complex dtype, or holding NaN, inf or values outside [−1, 1], raises
    ``ValueError``.

    With ``action="temperature_weight"``: ``Box(-1, 1, (batch_size, 2), float32)``, per instance a raw
    temperature (column 0, mapped as above) and a raw distillation weight (column 1), w = (a + 1) / 2 ∈
    [0, 1] (:func:`action_to_weight`). The KD term becomes α·(1/B)·Σ_i w_i·T_i²·KL_i: the mean over the
    batch, so that w ≡ 1 is exactly the temperature-only loss and w ≡ 0 is cross-entropy alone at weight
    γ; an instance's weight scales its own term and no other (a normalisation by Σ_i w_i would make the
    weights relative within the batch and leave w ≡ 0 undefined).

    ## Observation Space
    ``Box(0, 1, (batch_size, 3), float32)``, one row per instance of the coming batch:

    | Col | Observation                                                   | Min | Max |
    |-----|---------------------------------------------------------------|-----|-----|
    | 0   | teacher confidence: teacher's top-1 probability               | 0   | 1   |
    | 1   | student confidence: student's top-1 probability               | 0   | 1   |
    | 2   | student uncertainty: 1 − (student's top-1 − top-2 probability) | 0   | 1   |

    With ``observation="extended"``: ``Box(0, 1, (batch_size, 7), float32)``, the three columns above and:

    | Col | Observation                                                   | Min | Max |
    |-----|---------------------------------------------------------------|-----|-----|
    | 3   | training progress: steps done in the episode / its steps (1 in the last observation) | 0 | 1 |
    | 4   | teacher's probability of the instance's true label            | 0   | 1   |
    | 5   | teacher agrees: 1 if the teacher's top-1 class is the label, else 0 | 0 | 1 |
    | 6   | student's probability of the true label                       | 0   | 1   |

    The student's transfer set is labelled, so a policy may see where the teacher is wrong (column 5) and
    how far the run is (column 3, which a global schedule needs).

    ## Rewards
    The student is trained on the batch with loss γ·CE + α·mean_i(T_i²·KL(p_teacher^{T_i} ‖
    p_student^{T_i})) (``ce_weight`` = γ, ``kd_weight`` = α), then rewarded by its performance gain
    scaled by the paper's sigmoid(epoch / n) (n = ``reward_epoch_scale``), so that late gains count more:

    * ``reward_measure="heldout"`` (default): the change of the student's accuracy on a fixed reward set
      of ``reward_set_size`` instances held out from training (the first instances of the validation
      split; the test split is never used for rewards).
    * ``reward_measure="batch"``: close to the authors' code's measure, the change of the student's
      accuracy between consecutive training batches: the next batch's accuracy before its update minus
      this batch's before this update, credited to this step. Theirs credits acc_k − acc_{k−1} (the same
      two forward passes) to batch k's actions one step late, and uses macro (per-class) accuracy where
      ours is the plain fraction correct. It costs nothing but is noisy.

    The held-out measure's eval-mode pass over the reward set costs about as much compute as the
    training step itself (256 instances forward against 64 forward and backward on the default task).
    ``reward_interval=k`` measures it only every k steps and at each epoch's end: the steps between get
    reward 0 and a measuring step gets the gain since the last measurement. Every epoch's rewards still
    sum to the same held-out gain times sigmoid(epoch / n); only the credit within an epoch is coarser.
    The default, 1, measures every step.

    ``feature_weight=β > 0`` adds β·L_feat to the student's loss, on the outputs of every stage of both
    networks from the passes the env already runs (the teacher's on the training set are computed once,
    as its logits): ``"nmd"`` the neuron-manifold loss (:func:`kd_envs.losses.nmd_loss`), ``"hint"``
    FitNets' hint loss through learned 1x1 regressors that train with the student, ``"attention"``
    attention transfer; stage weights 1, 1/2, 1/4, … from the shallowest. Every step's info then has
    ``loss_feature``. Teacher and student need the same number of stages (and, for the latter two, the
    same extent per stage).

    ## Starting State
    A student with fresh weights drawn from the episode's seed, trained for ``warmup_epochs`` at the
    fixed ``warmup_temperature`` inside ``reset`` (so every step of the episode is the agent's).

    ## Episode End
    Terminates after the last batch of the last epoch. The final ``info`` holds
    ``student_test_accuracy``, ``student_val_accuracy`` (the whole validation split: what baselines
    are chosen by), ``teacher_test_accuracy``, ``student_reward_set_accuracy``, the student's confident
    prediction on the test split (:func:`kd_envs.metrics.confident_prediction_report`:
    ``student_test_ece`` over 15 bins, ``student_test_nll``, the same after temperature scaling fitted on
    validation, ``student_test_ece_scaled``, ``student_test_nll_scaled`` with its
    ``student_calibration_temperature``, ``student_selective_accuracy_90`` at the confidence threshold
    that keeps 90% of validation, with the ``student_selective_coverage_90`` it reaches on test, and
    ``student_test_aurc``, the area under the risk–coverage curve) and the
    temperatures' ``temperature_mean``, ``temperature_std``, ``temperature_min``,
    ``temperature_max`` over the episode. Every step's ``info`` has ``epoch``, ``batch``,
    ``loss_ce``, ``loss_kd`` and ``batch_temperature_mean``.

    ## Arguments
    | kwarg                | default     | meaning                                                          |
    |----------------------|-------------|------------------------------------------------------------------|
    | `task`               | None        | a name in ``kd_envs.tasks.TASKS``, a ``TaskConfig``, its dict; None: default|
    |                      |             | or a ``Task`` of your own, or its factory ``"module:function"`` (below) |
    | `batch_size`         | None        | instances per batch (the observation's rows); None: the task's (64) |
    | `epochs`             | None        | epochs of one distillation run, warm-up included; None: the task's (40) |
    | `ce_weight`          | 0.1         | γ, weight of cross-entropy on labels                              |
    | `kd_weight`          | 0.9         | α, weight of the temperature-scaled KD term                       |
    | `student_lr`         | None        | the student's Adam learning rate; None: the task's (3e-3)         |
    | `reward_measure`     | `"heldout"` | `"heldout"` or `"batch"` (see Rewards)                            |
    | `reward_set_size`    | 256         | instances in the held-out reward set                              |
    | `reward_epoch_scale` | 10.0        | n in the reward's sigmoid(epoch / n)                              |
    | `reward_interval`    | 1           | held-out measure only: measure the reward set every k steps (below) |
    | `feature_weight`     | 0.0         | β, weight of a feature-distillation term on every stage (0: none)  |
    | `feature_loss`       | `"nmd"`     | `"nmd"` (neuron manifold), `"hint"` (FitNets) or `"attention"`    |
    | `warmup_epochs`      | 0           | epochs at ``warmup_temperature`` inside ``reset``                 |
    | `warmup_temperature` | 4.0         | the warm-up's fixed temperature                                   |
    | `exploration`        | `"none"`    | `"entropy_mixup"` (the paper's) or `"entropy_mixup_authors"` (below) |
    | `action_scale`       | 6.0         | slope of the action-to-temperature map                            |
    | `mixup_interval`     | None        | epochs between the authors' mixup epochs (None: epochs // 12, ≥ 1) |
    | `observation`        | `"paper"`   | `"paper"` (3 columns) or `"extended"` (7: see Observation Space)  |
    | `action`             | `"temperature"` | `"temperature"` or `"temperature_weight"` (see Action Space) |
    | `task_set`           | None        | a task set (``kd_envs.tasks.task_sets.TASK_SETS``), instead of `task` |
    | `split`              | `"train"`   | with `task_set`: the instances episodes draw from, `"train"` or `"test"` |
    | `cache_dir`          | None        | where teachers are cached (default ``$KD_GYM_CACHE`` or ~/.cache)  |
    | `data_root`          | None        | folder with CIFAR's files, for the CIFAR tasks                    |
    | `render_mode`        | None        | None or `"rgb_array"` (see Rendering)                             |
    | `device`             | `"cpu"`     | `"cpu"`, `"cuda"`, `"cuda:<n>"` or `"mps"`: where training runs (Devices) |

    ``exploration="entropy_mixup"``: at the start of each epoch the training instances are ranked by
    the entropy of the student's prediction; the epoch trains on the top 20% (the most uncertain, the
    high-value instances), each mixed up with a random instance of the 40–50% band,
    x = λ·x_top + (1 − λ)·x_band with λ ~ U(0.7, 1) and the top instance's label, and with the
    teacher's predictions on the mixed inputs. Epochs are five times shorter, so an agent sees more
    episodes for the same compute.

    ``exploration="entropy_mixup_authors"``: the purification of the authors' public code
    (:func:`authors_purification`). Every instance's student entropy, from its latest training pass, is
    summed over the epochs of the run so far, the first left out (their ``entropy_record[:, 1:]``).
    Every ``mixup_interval`` epochs, from epoch 2·``mixup_interval`` on (epochs counted from 1; theirs:
    every 20 of 240 from epoch 40, and the default interval keeps that proportion, epochs // 12), one
    epoch trains on the whole set with the 80–90% entropy band (confident) replaced in place by w·x_hard
    + (1 − w)·x_own, x_hard taken rank to rank from the 10–20% band, w from 1.0 to 0.7 by rank, labels
    kept; every other epoch trains on the plain set. The teacher predicts on the mixed inputs.
    Differences that remain: they mix uint8 pixels before augmentation, we mix the (normalised) inputs;
    their score has a typo'd normaliser that is a constant, which does not change the ranking.

    Errors name the bad kwarg, its value and what is allowed; a bool is not an integer, nor is a float
    (``epochs=2.5``), and a string is not a number (``ce_weight="0.1"``). A ``TaskConfig`` given as ``task``
    is kept in ``env.spec.kwargs`` as its dict, so the spec stores as JSON (``EnvSpec.to_json``).

    The ids are registered when ``kd_envs`` is imported. A process that has not imported it, such as a
    worker of SB3's ``SubprocVecEnv`` (started by forkserver or spawn), makes the env as
    ``gym.make("kd_envs:TemperatureKD-v0")`` (``make_vec_env("kd_envs:TemperatureKD-v0", ...)``): the
    prefix imports ``kd_envs`` first.

    ## Your own task
    ``task=Task.from_tensors(train=(x, y), val=(x, y), test=(x, y), teacher=module, student=...)``
    (:meth:`kd_envs.tasks.Task.from_tensors`; the student a ``ModelConfig`` or a function that builds a module)
    distils your trained teacher into your student on your data: the validation split gives the rewards, the test
    split the final scores, the task's ``student_training`` the default epochs, batch size and rate. Given as its
    factory, ``task="module:function"`` (a function of no arguments that returns the task), the task is made by
    calling it, and the env's spec records that string, so ``EnvSpec.to_json``, leaderboard entries and ``--verify``
    can make the same task again (and check its teacher's and data's sha256); a ``Task`` given itself is recorded by
    its ``factory`` if it has one, else as ``{"tensors": name, "factory": None}``, which names it but cannot make it
    again (such a record given as ``task`` is refused, saying so). Feature distillation (``feature_weight``) needs
    modules that return their stages' outputs, as the model families do (``forward(x, return_features=True)``);
    other modules are refused by name. ``docs/byo-task.md`` walks through an example.

    ## Devices
    ``device="cuda"`` (or ``"cuda:<n>"``, ``"mps"``) puts the task's data, the teacher and its outputs on
    the training set, the student, its optimiser and every training step on that device. Random draws
    (the student's initial weights, batch orders, mixup partners, CIFAR crops) still come from CPU
    generators seeded from the episode's seed, so a seed draws the same on every device; the numbers that
    follow differ from the CPU's in the last bits (other kernels). Per step only what the observation and
    the info need comes back: the batch's student logits and teacher confidences (and, with
    ``observation="extended"``, its labels and the teacher's probabilities of them), the losses and the
    reward's accuracy counts; the episode's end brings back the student's logits on the validation and
    test splits for the calibration report. A device this machine does not have is refused when the env
    is made, by name. ``batch_logits()``, ``batch_data()`` and ``student`` are on the device.
    ``scripts/gpu_episode.py`` times a full-scale CIFAR episode on a GPU.

    ## Task sets
    ``task_set="cloud-edge-v0"`` (docs/tasks.md lists its instances and why each is there) makes every
    episode one instance of a named, versioned set of tasks, checked against its sha256: ``reset`` draws an
    instance of ``split`` from the episode's seed, or takes ``options={"instance": i}`` (its position in the
    split; the draw is made either way, so a seed gives the same student both ways), and every ``info``
    has ``instance`` and ``instance_name``. A policy is trained on ``split="train"`` and scored on
    ``split="test"``, whose instances it never saw. An instance's epochs, batch size and rate are its task's
    unless the kwargs give them; ``max_steps`` is the current episode's. Each instance's task loads on its
    first episode and is kept.

    ## Rendering
    ``metadata["render_modes"]`` is ``["rgb_array"]``: ``render()`` returns a histogram of the last
    step's temperatures (20 bins over (0, 10)) as a (240, 320, 3) uint8 array, drawn with matplotlib (an
    empty one before an episode's first step); with ``render_mode=None`` (the default) it returns None.
    Any other mode raises ``ValueError`` when the env is made, as in every KD-Gym env
    (through ``gym.make``, ``"human"`` and ``"rgb_array_list"`` are Gymnasium's own wrappers around
    ``"rgb_array"``).

    ## Copies
    ``pickle`` and ``copy.deepcopy`` copy the env at any point, mid-episode too: the copy continues
    exactly as the original would (the same observations, rewards, infos and student weights under the
    same actions). The coming batch's student outputs, which hold the graph its update back-propagates
    through, are not copied but computed again, BatchNorm's running statistics left as they were.

    ## Version History
    * v0: initial version; later, without changing any episode: ``render_mode="rgb_array"``, copies
      mid-episode, complex actions refused, kwargs of a wrong type refused by name, a ``TaskConfig``
      stored in the spec as its dict; ``observation``, ``action``, ``task_set`` and ``split`` (their
      defaults give the episodes of before); a task of your own (``Task`` or ``"module:function"``) and
      ``device`` (on the CPU, the episodes of before, bit for bit).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        task: str | TaskConfig | dict[str, Any] | Task | None = None,
        batch_size: int | None = None,
        epochs: int | None = None,
        ce_weight: float = 0.1,
        kd_weight: float = 0.9,
        student_lr: float | None = None,
        reward_measure: str = "heldout",
        reward_set_size: int = 256,
        reward_epoch_scale: float = 10.0,
        warmup_epochs: int = 0,
        warmup_temperature: float = 4.0,
        exploration: str = "none",
        action_scale: float = 6.0,
        mixup_interval: int | None = None,
        reward_interval: int = 1,
        feature_weight: float = 0.0,
        feature_loss: str = "nmd",
        observation: str = "paper",
        action: str = "temperature",
        task_set: str | None = None,
        split: str = "train",
        cache_dir: str | Path | None = None,
        data_root: str | None = None,
        render_mode: str | None = None,
        device: str = "cpu",
    ):
        env_id = "TemperatureKD-v0"
        if task_set is not None:
            if task is not None:
                raise kwarg_error(env_id, "task", task, f"None with task_set={task_set!r} (the set names the tasks)")
            check_choice(env_id, "split", split, SPLITS)
            try:
                self.task_set = load_task_set(task_set)
            except ValueError as error:
                raise ValueError(f"{env_id}: {error}") from None
            self.instances: tuple[TaskInstance, ...] = self.task_set.split(split)
        else:
            if split != "train":
                raise kwarg_error(env_id, "split", split, "'train' (a split is one of a task set's; give task_set)")
            self.task_set = None
            name = task if isinstance(task, str) else None
            task = DEFAULT_TASK if task is None else task
            try:  # a named task's config, or a ready task of your own (given, or made by its factory)
                resolved = task_or_config(task)
            except ValueError as error:  # (its kind kept: --verify tells a TaskFactoryError apart)
                raise type(error)(f"{env_id}: {error}") from None
            self.instances = (TaskInstance(0, name, "train", resolved, ""),)
        self._given = {"batch_size": batch_size, "epochs": epochs, "student_lr": student_lr,
                       "mixup_interval": mixup_interval}  # fmt: skip
        self._common = {
            "ce_weight": ce_weight, "kd_weight": kd_weight, "reward_measure": reward_measure,
            "reward_set_size": reward_set_size, "reward_epoch_scale": reward_epoch_scale,
            "warmup_epochs": warmup_epochs, "warmup_temperature": warmup_temperature, "exploration": exploration,
            "action_scale": action_scale, "reward_interval": reward_interval, "feature_weight": feature_weight,
            "feature_loss": feature_loss, "observation": observation, "action": action, "cache_dir": cache_dir,
            "data_root": data_root, "render_mode": render_mode, "device": device,
        }  # fmt: skip
        # Every instance's kwargs are checked before any task is loaded; the spaces need one batch size.
        options = [self._options_for(instance.task) for instance in self.instances]
        sizes = sorted({o.batch_size for o in options})
        if len(sizes) > 1:
            raise ValueError(f"{env_id}: task_set={task_set!r} split={split!r} has batch sizes {sizes}; pass "
                             "batch_size to give every instance the same")  # fmt: skip
        self._loaded: dict[int, dict[str, Any]] = {}
        self._use_instance(0)
        batch_size = self.options.batch_size
        columns = 7 if observation == "extended" else 3
        self.observation_space = spaces.Box(0.0, 1.0, shape=(batch_size, columns), dtype=np.float32)
        shape = (batch_size, 2) if action == "temperature_weight" else (batch_size,)
        self.action_space = spaces.Box(-1.0, 1.0, shape=shape, dtype=np.float32)
        self.render_mode = render_mode
        self._student = None
        self._last_temperatures: np.ndarray | None = None  # the last step's, for render()

    def _options_for(self, task: TaskConfig | Task) -> _Options:
        """The validated options of one task: the kwargs given, the task's schedule for those left at None."""
        schedule = task.student_training  # the task's schedule fills what is not given
        given = self._given
        batch_size = schedule.batch_size if given["batch_size"] is None else given["batch_size"]
        epochs = schedule.epochs if given["epochs"] is None else given["epochs"]
        student_lr = schedule.lr if given["student_lr"] is None else given["student_lr"]
        mixup_interval = given["mixup_interval"]
        if mixup_interval is None:
            mixup_interval = max(1, epochs // 12) if isinstance(epochs, (int, np.integer)) else 1
        return _Options(batch_size=batch_size, epochs=epochs, student_lr=student_lr, mixup_interval=mixup_interval,
                        **self._common)  # fmt: skip

    # Attributes that belong to the current instance (its task and what the env derives from it once).
    _INSTANCE_STATE = ("options", "task", "reward_x", "reward_y", "_teacher_logits", "_teacher_features",
                       "_teacher_confidence", "steps_per_epoch", "max_steps", "_position")  # fmt: skip

    def _use_instance(self, position: int) -> None:
        """Make ``self.instances[position]`` the current task: loaded (data, teacher, the teacher's outputs on
        the transfer set) on first use, and kept for the next episodes that draw it."""
        if position not in self._loaded:
            instance = self.instances[position]
            self.options = self._options_for(instance.task)
            self._position = position
            device = self.options.device
            task = (
                instance.task
                if isinstance(instance.task, Task)
                else make_task(
                    instance.task, cache_dir=self.options.cache_dir, data_root=self.options.data_root, device=device
                )
            )
            # Data and teacher live on the device from here on (on the CPU: the task itself, no copy).
            self.task: Task = task.to(device)
            data = self.task.data
            if self.options.reward_set_size > len(data.y_val):
                raise ValueError(
                    f"TemperatureKD-v0: reward_set_size={self.options.reward_set_size}; the task's validation split "
                    f"has only {len(data.y_val)} instances"
                )
            self.reward_x = data.x_val[: self.options.reward_set_size]
            self.reward_y = data.y_val[: self.options.reward_set_size]
            # Without augmentation the teacher's predictions on the training set never change: compute once.
            self._teacher_logits, self._teacher_features = (None, None) if data.augment else self._teacher_outputs(
                data.x_train)  # fmt: skip
            self._teacher_confidence = None if data.augment else teacher_confidence(self._teacher_logits)
            if self.options.feature_weight > 0:
                self._check_feature_loss()
            self.steps_per_epoch = steps_per_epoch(self._epoch_size(), self.options.batch_size)
            self.max_steps = (self.options.epochs - self.options.warmup_epochs) * self.steps_per_epoch
            self._loaded[position] = {name: getattr(self, name) for name in self._INSTANCE_STATE}
        for name, value in self._loaded[position].items():
            setattr(self, name, value)

    @property
    def instance(self) -> TaskInstance:
        """The current episode's task instance (before the first reset: the first of the split)."""
        return self.instances[self._position]

    # -- copies ----------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # The coming batch's student outputs hold the autograd graph its update back-propagates through,
        # which neither pickle nor deepcopy can carry: the copy drops them and redoes that forward pass.
        state = self.__dict__.copy()
        state["_student_logits"] = state["_student_features"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._student is not None and self._epoch < self.options.epochs:
            self._redo_student_pass()

    def _redo_student_pass(self) -> None:
        """The coming batch's train-mode forward pass again, as :meth:`_forward_batch` made it: the same
        weights and inputs give the same outputs, and BatchNorm's running statistics, which that pass
        already moved, are put back so that they move once. They are put back as new tensors, not copied
        into the old ones: BatchNorm's backward keeps the running statistics it was given and checks that
        nothing changed them in place since (an in-place restore made the copy's first update fail)."""
        saved = {(module, name): buffer.clone() for module in self._student.modules()
                 for name, buffer in module._buffers.items() if buffer is not None}  # fmt: skip
        if self.options.feature_weight > 0:
            self._student_logits, self._student_features = self._student(self._x, return_features=True)
        else:
            self._student_logits = self._student(self._x)
        for (module, name), buffer in saved.items():
            module._buffers[name] = buffer

    # -- episode state ---------------------------------------------------------------------------
    def _epoch_size(self) -> int:
        n = len(self.task.data.y_train)
        return n // 5 if self.options.exploration == "entropy_mixup" else n

    def _entropy_ranking(self) -> torch.Tensor:
        """Training instances by the entropy of the student's prediction, most uncertain first."""
        probs = F.softmax(predict_logits(self._student, self.task.data.x_train), dim=1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)
        return entropy.argsort(descending=True, stable=True)

    def _start_epoch(self) -> None:
        """Order (and for exploration, select and mix) the instances of the next epoch."""
        data, gen = self.task.data, self._torch_gen
        if self.options.exploration == "none":
            self._epoch_x, self._epoch_y, self._epoch_teacher = data.x_train, data.y_train, self._teacher_logits
            self._epoch_teacher_features = self._teacher_features
            self._epoch_teacher_confidence = self._teacher_confidence
            self._epoch_order = torch.randperm(len(data.y_train), generator=gen).to(self.options.device)
            return
        n = len(data.y_train)
        if self.options.exploration == "entropy_mixup_authors":
            self._epoch_y = data.y_train
            # every instance trains, in a fresh order (drawn on the CPU generator, as every draw here)
            self._epoch_order = torch.randperm(n, generator=gen).to(self.options.device)
            if not self.is_mixup_epoch(self._epoch):
                self._epoch_x, self._epoch_teacher = data.x_train, self._teacher_logits
                self._epoch_teacher_features = self._teacher_features
                self._epoch_teacher_confidence = self._teacher_confidence
                return
            self._epoch_x = authors_purification(data.x_train, self._entropy_sum)
            self._epoch_teacher, self._epoch_teacher_features = (None, None) if data.augment else (
                self._teacher_outputs(self._epoch_x))  # fmt: skip
            self._epoch_teacher_confidence = None if data.augment else teacher_confidence(self._epoch_teacher)
            return
        ranked = self._entropy_ranking()
        top = ranked[: self._epoch_size()]
        band = ranked[int(0.4 * n) : int(0.5 * n)]
        device = self.options.device
        partner = band[torch.randint(0, len(band), (len(top),), generator=gen).to(device)]
        lam = (0.7 + 0.3 * torch.rand(len(top), generator=gen)).to(device).view(-1, *([1] * (data.x_train.dim() - 1)))
        self._epoch_x = lam * data.x_train[top] + (1 - lam) * data.x_train[partner]
        self._epoch_y = data.y_train[top]
        self._epoch_teacher, self._epoch_teacher_features = (None, None) if data.augment else (
            self._teacher_outputs(self._epoch_x))  # fmt: skip
        self._epoch_teacher_confidence = None if data.augment else teacher_confidence(self._epoch_teacher)
        self._epoch_order = torch.randperm(len(top), generator=gen).to(device)

    def is_mixup_epoch(self, epoch: int) -> bool:
        """Whether ``epoch`` (counted from 0) trains on the authors' mixed set: every ``mixup_interval``
        epochs counted from 1, from 2·``mixup_interval`` on."""
        e, k = epoch + 1, self.options.mixup_interval
        return e >= 2 * k and e % k == 0

    def _forward_batch(self) -> None:
        """Forward the coming batch through the student (train mode, with grad: the same pass the
        training step uses) and form its observation."""
        b = self.options.batch_size
        idx = self._epoch_order[self._batch * b : (self._batch + 1) * b]
        x = self._epoch_x[idx]
        features = self.options.feature_weight > 0
        if self.task.data.augment:
            x = augment_batch(x, self._torch_gen)
            teacher_logits, teacher_features = self._teacher_outputs(x)
            confidence = teacher_confidence(teacher_logits)
        else:
            teacher_logits, confidence = self._epoch_teacher[idx], self._epoch_teacher_confidence[idx]
            teacher_features = [f[idx] for f in self._epoch_teacher_features] if features else None
        self._x, self._y = x, self._epoch_y[idx]
        self._teacher_batch, self._teacher_batch_confidence = teacher_logits, confidence
        self._teacher_batch_features = teacher_features
        if features:  # the same single pass, with the stages' outputs
            self._student_logits, self._student_features = self._student(x, return_features=True)
        else:
            self._student_logits = self._student(x)
        self._obs = self._observation(self._student_logits)
        if self.options.exploration == "entropy_mixup_authors":  # their entropy record, from the training pass
            log_p = F.log_softmax(self._student_logits.detach(), dim=1)
            self._entropy_last[idx] = -(log_p.exp() * log_p).sum(dim=1)

    def _observation(self, student_logits: torch.Tensor, progress: float | None = None) -> np.ndarray:
        """The coming batch's observation: the paper's three columns, and with ``observation="extended"``
        the four of :func:`extended_columns` (``progress`` defaults to the steps done over the episode's)."""
        obs = batch_observation(student_logits, self._teacher_batch_confidence)
        if self.options.observation == "paper":
            return obs
        with torch.no_grad():
            teacher = self._teacher_batch
            true_probability = F.softmax(teacher, dim=1).gather(1, self._y[:, None]).squeeze(1)
            agrees = (teacher.argmax(dim=1) == self._y).float()
        if progress is None:
            done = (self._epoch - self.options.warmup_epochs) * self.steps_per_epoch + self._batch
            progress = done / self.max_steps
        return np.concatenate([obs, extended_columns(student_logits, self._y, true_probability, agrees, progress)],
                              axis=1)  # fmt: skip

    def _train_on_batch(self, temperature: torch.Tensor, weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        temperature = temperature.to(self.options.device)  # the action's map ran on the CPU (the info reads it)
        weight = None if weight is None else weight.to(self.options.device)
        if weight is None:
            kd = kd_loss(self._student_logits, self._teacher_batch, temperature)
        else:  # α·(1/B)·Σ_i w_i·T_i²·KL_i: w ≡ 1 is the temperature-only loss, w ≡ 0 cross-entropy alone
            kd = (weight * kd_loss(self._student_logits, self._teacher_batch, temperature, reduction="none")).mean()
        losses = {"ce": F.cross_entropy(self._student_logits, self._y), "kd": kd}
        total = self.options.ce_weight * losses["ce"] + self.options.kd_weight * losses["kd"]
        if self.options.feature_weight > 0:
            losses["feature"] = self._feature_loss()
            total = total + self.options.feature_weight * losses["feature"]
        self._optimizer.zero_grad(set_to_none=True)
        total.backward()
        self._optimizer.step()
        return losses

    @torch.no_grad()
    def _teacher_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """The teacher's logits on ``x`` and, when a feature loss is on, its stages' outputs (one pass)."""
        if self.options.feature_weight == 0:
            return predict_logits(self.task.teacher, x), None
        chunks = [self.task.teacher(x[i : i + 1024], return_features=True) for i in range(0, len(x), 1024)]
        logits = torch.cat([c[0] for c in chunks])
        return logits, [torch.cat([c[1][s] for c in chunks]) for s in range(len(chunks[0][1]))]

    def _check_feature_loss(self) -> None:
        """Fail at construction, naming the kwarg, if the task's two networks cannot be compared stage by
        stage with the chosen feature loss (one look at four instances through a throwaway student)."""
        x = self.task.data.x_train[:4]
        probe = self.task.build_student(torch.Generator().manual_seed(0)).to(self.options.device).eval()
        try:
            with torch.no_grad():
                self._student_features = probe(x, return_features=True)[1]
            self._teacher_batch_features = self._teacher_outputs(x)[1]
        except TypeError as error:  # a module of your own that has no return_features
            raise ValueError(f"TemperatureKD-v0: feature_weight={self.options.feature_weight!r} needs a student and a "
                             "teacher whose forward(x, return_features=True) returns (logits, [stage outputs]) "
                             f"as the model families' do; this task's do not ({error})") from None  # fmt: skip
        try:
            if self.options.feature_loss == "hint":
                generator = torch.Generator().manual_seed(0)
                self._regressors = hint_regressors(self._student_features, self._teacher_batch_features,
                                                   generator).to(self.options.device)  # fmt: skip
            self._feature_loss()
        except ValueError as error:
            raise ValueError(f"TemperatureKD-v0: feature_loss={self.options.feature_loss!r} cannot compare this "
                             f"task's student and teacher: {error}") from None  # fmt: skip

    def _feature_loss(self) -> torch.Tensor:
        """The feature-distillation term on every stage (stage weights 1, 1/2, 1/4, … shallow first)."""
        student, teacher = self._student_features, self._teacher_batch_features
        if len(student) != len(teacher):
            raise ValueError(f"TemperatureKD-v0: feature_loss={self.options.feature_loss!r} needs as many student "
                             f"stages as teacher stages; the task has {len(student)} and {len(teacher)}")  # fmt: skip
        if self.options.feature_loss == "nmd":
            return nmd_loss(student, teacher)
        if self.options.feature_loss == "attention":
            return attention_loss(student, teacher)
        return hint_loss([r(f) for r, f in zip(self._regressors, student)], teacher)

    def _advance(self) -> bool:
        """Move to the next batch; returns True when the run is over."""
        self._batch += 1
        if self._batch == self.steps_per_epoch:
            if self.options.exploration == "entropy_mixup_authors" and self._epoch >= 1:
                # One value per instance per epoch, the first epoch left out, as their entropy_record[:, 1:]
                # (an instance the epoch's dropped last batch skipped keeps its latest value, as theirs).
                self._entropy_sum += self._entropy_last
            self._batch = 0
            self._epoch += 1
            if self._epoch == self.options.epochs:
                return True
            self._start_epoch()
        return False

    @torch.no_grad()
    def _reward_set_accuracy(self) -> float:
        # One eval-mode pass (no chunking, no copies): this runs every step with the default reward.
        self._student.eval()
        correct = (self._student(self.reward_x).argmax(1) == self.reward_y).sum().item()
        self._student.train()
        return correct / len(self.reward_y)

    def _batch_accuracy(self, logits: torch.Tensor) -> float:
        return (logits.detach().argmax(1) == self._y).sum().item() / len(self._y)

    # -- gymnasium API ---------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        position = self._instance_position(options)
        if position != self._position:
            self._use_instance(position)
        self._torch_gen = torch.Generator().manual_seed(int(self.np_random.integers(0, 2**63 - 1)))
        device = self.options.device
        self._student = self.task.build_student(self._torch_gen).to(device)  # drawn on the CPU: alike on every device
        self._student.train()
        parameters = list(self._student.parameters())
        self._regressors = None
        if self.options.feature_weight > 0 and self.options.feature_loss == "hint":
            # FitNets' regressors train with the student; their shapes come from one look at two instances
            # (eval mode: the look moves no BatchNorm statistics), their weights from a generator of their
            # own seeded from the episode's, so the batches come in the same order as without them.
            x = self.task.data.x_train[:2]
            self._student.eval()
            with torch.no_grad():
                student_features = self._student(x, return_features=True)[1]
            self._student.train()
            teacher_features = self._teacher_outputs(x)[1]
            generator = torch.Generator().manual_seed(self._torch_gen.initial_seed() + 1)
            self._regressors = hint_regressors(student_features, teacher_features, generator).to(device)
            parameters += list(self._regressors.parameters())
        self._optimizer = torch.optim.Adam(parameters, lr=self.options.student_lr)
        self._epoch, self._batch = 0, 0
        self._entropy_sum = torch.zeros(len(self.task.data.y_train), device=device)
        self._entropy_last = torch.zeros(len(self.task.data.y_train), device=device)
        self._temperature_sum = self._temperature_sq_sum = 0.0
        self._temperature_min, self._temperature_max, self._temperature_count = math.inf, -math.inf, 0
        self._weight_sum = 0.0
        self._last_temperatures = None
        self._start_epoch()
        warmup_t = torch.full((self.options.batch_size,), self.options.warmup_temperature, device=device)
        while self._epoch < self.options.warmup_epochs:
            self._forward_batch()
            self._train_on_batch(warmup_t)
            self._advance()
        self._forward_batch()
        if self.options.reward_measure == "heldout":
            self._last_measure = self._reward_set_accuracy()
        else:
            self._last_measure = self._batch_accuracy(self._student_logits)
        return self._obs, {"epoch": self._epoch, "batch": self._batch, **self._instance_info()}

    def _instance_position(self, options: dict[str, Any] | None) -> int:
        """The position in ``self.instances`` of the coming episode's task. With a task set one is drawn from
        the episode's generator first, always, so that a seed gives the same student whether its instance was
        drawn or given as ``options={"instance": i}``; without one there is a single task, position 0."""
        drawn = int(self.np_random.integers(len(self.instances))) if self.task_set is not None else 0
        if options is None:
            return drawn
        if not isinstance(options, dict) or set(options) - {"instance"}:
            raise ValueError(f"TemperatureKD-v0: reset options={options!r}; expected None or {{'instance': i}}")
        if "instance" not in options:
            return drawn
        i, n = options["instance"], len(self.instances)
        if not is_int(i) or not 0 <= i < n:
            where = f"task set {self.task_set.name!r} split {self.instances[0].split!r}" if self.task_set else "it"
            raise ValueError(f"TemperatureKD-v0: reset options instance={i!r}; expected an integer in [0, {n}): "
                             f"{where} has {n} instance{'s' if n > 1 else ''}")  # fmt: skip
        return int(i)

    def _instance_info(self) -> dict[str, Any]:
        """What every info says of the episode's instance, with a task set: its position in the split and name."""
        if self.task_set is None:
            return {}
        return {"instance": self._position, "instance_name": self.instance.name}

    def _check_action(self, action) -> torch.Tensor:
        a = np.asarray(action)
        expected = self.action_space.shape
        # Fast path for every step: NaN fails the comparison too.
        if a.shape == expected and a.dtype.kind == "f" and np.abs(a).max() <= 1.0:
            return torch.as_tensor(a, dtype=torch.float32)
        if a.shape != expected or not np.issubdtype(a.dtype, np.number):
            per_instance = "one value per instance" if len(expected) == 1 else "a temperature and a weight per instance"
            raise ValueError(
                f"TemperatureKD-v0: action has shape {a.shape} and dtype {a.dtype}; expected a numeric array "
                f"of shape {expected} ({per_instance}) in [-1, 1]"
            )
        if a.dtype.kind not in "iuf":  # complex: torch would train on it, sigmoid and all
            raise ValueError(f"TemperatureKD-v0: action has dtype {a.dtype}; expected real numbers in [-1, 1]")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"TemperatureKD-v0: action holds NaN or inf at {np.flatnonzero(~np.isfinite(a))[:8]}")
        if a.min() < -1.0 or a.max() > 1.0:
            raise ValueError(
                f"TemperatureKD-v0: action values in [{a.min():.4g}, {a.max():.4g}]; expected them in [-1, 1] "
                "(T = 10·sigmoid(action_scale·a))"
            )
        return torch.as_tensor(a, dtype=torch.float32)

    def step(self, action):
        if self._student is None:
            raise RuntimeError("TemperatureKD-v0: call reset() before step()")
        if self._epoch >= self.options.epochs:
            raise RuntimeError("TemperatureKD-v0: the episode has ended; call reset()")
        action = self._check_action(action)
        weight = None
        if self.options.action == "temperature_weight":
            action, weight = action[:, 0], action_to_weight(action[:, 1])
            self._weight_sum += float(weight.numpy().sum(dtype=np.float64))
        temperature = action_to_temperature(action, self.options.action_scale)
        self._record_temperatures(temperature)
        batch_measure = self.options.reward_measure == "batch"
        losses = self._train_on_batch(temperature, weight)
        epoch = self._epoch  # the epoch this batch belongs to scales its reward
        terminated = self._advance()

        info: dict[str, Any] = {
            "epoch": epoch,
            "batch": self._batch,
            "loss_ce": losses["ce"].item(),
            "loss_kd": losses["kd"].item(),
            **({"loss_feature": losses["feature"].item()} if "feature" in losses else {}),
            "batch_temperature_mean": float(temperature.numpy().mean(dtype=np.float64)),
            **({"batch_weight_mean": float(weight.numpy().mean(dtype=np.float64))} if weight is not None else {}),
            **self._instance_info(),
        }
        if terminated:
            # No batch comes next: observe the batch just trained on, after its update (eval mode, so
            # the look does not move BatchNorm's running statistics).
            after_logits = predict_logits(self._student, self._x)
            self._obs = self._observation(after_logits, progress=1.0)
            next_batch_accuracy = self._batch_accuracy(after_logits) if batch_measure else 0.0
        else:
            self._forward_batch()
            next_batch_accuracy = self._batch_accuracy(self._student_logits) if batch_measure else 0.0
        if batch_measure:
            # This batch's accuracy before its update was the previous step's next-batch accuracy.
            gain = next_batch_accuracy - self._last_measure
            self._last_measure = next_batch_accuracy
        elif terminated or self._batch % self.options.reward_interval == 0:  # batch 0: an epoch just closed
            measure = self._reward_set_accuracy()
            gain = measure - self._last_measure
            self._last_measure = measure
        else:
            gain = 0.0
        # The paper scales the gain by sigmoid(epoch / n): late improvements are worth more.
        reward = gain / (1.0 + math.exp(-epoch / self.options.reward_epoch_scale))
        if terminated:
            info.update(self._final_info())
        return self._obs, float(reward), terminated, False, info

    def _record_temperatures(self, temperature: torch.Tensor) -> None:
        t = temperature.numpy()  # NumPy reductions on a few hundred values cost less than torch's dispatch
        self._last_temperatures = t
        self._temperature_sum += float(t.sum(dtype=np.float64))
        self._temperature_sq_sum += float(np.square(t, dtype=np.float64).sum())
        self._temperature_min = min(self._temperature_min, float(t.min()))
        self._temperature_max = max(self._temperature_max, float(t.max()))
        self._temperature_count += t.size

    def render(self) -> np.ndarray | None:
        """With ``render_mode="rgb_array"``: a histogram of the last step's temperatures (20 bins over
        (0, 10)) as an RGB array of shape (240, 320, 3), uint8; empty before the first step of an episode.
        With ``render_mode=None``: None."""
        if self.render_mode is None:
            return None

        def draw(axes) -> None:
            t = self._last_temperatures
            if t is not None:
                axes.hist(t, bins=20, range=(0.0, MAX_TEMPERATURE), color="tab:blue")
                axes.set_title(f"the last step's temperatures (mean {t.mean():.2f})", fontsize=9)
            else:
                axes.set_title("no step yet", fontsize=9)
            axes.set_xlim(0.0, MAX_TEMPERATURE)
            axes.set_xlabel("temperature", fontsize=8)
            axes.set_ylabel("instances", fontsize=8)

        return chart_frame(draw)

    def _final_info(self) -> dict[str, Any]:
        n = self._temperature_count
        mean = self._temperature_sum / n
        data = self.task.data
        test_logits, val_logits = predict_logits(self._student, data.x_test), predict_logits(self._student, data.x_val)
        test_accuracy = (test_logits.argmax(1) == data.y_test).float().mean()
        val_accuracy = (val_logits.argmax(1) == data.y_val).float().mean()
        # The report's NumPy and SciPy steps need the CPU: the episode's last look comes back (on the CPU, as is).
        confident = confident_prediction_report(val_logits.cpu(), data.y_val.cpu(), test_logits.cpu(),
                                                data.y_test.cpu())  # fmt: skip
        return {
            "student_test_accuracy": test_accuracy.item(),
            "student_val_accuracy": val_accuracy.item(),
            **{f"student_{k}": v for k, v in confident.items()},
            "teacher_test_accuracy": self.task.teacher_test_accuracy,
            "student_reward_set_accuracy": self._reward_set_accuracy(),
            "temperature_mean": mean,
            "temperature_std": math.sqrt(max(self._temperature_sq_sum / n - mean**2, 0.0)),
            "temperature_min": self._temperature_min,
            "temperature_max": self._temperature_max,
            **({"weight_mean": self._weight_sum / n} if self.options.action == "temperature_weight" else {}),
        }

    def batch_logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The coming batch's student logits (detached, from the very pass its update will use) and the
        teacher's logits, each (batch_size, classes). Not part of the observation: for baselines that
        read the distillation loss itself, such as CTKD's learnable temperature (``agents.temperature.ctkd``)."""
        if self._student is None:
            raise RuntimeError("TemperatureKD-v0: call reset() before batch_logits()")
        if self._epoch >= self.options.epochs:
            raise RuntimeError("TemperatureKD-v0: the episode has ended; no batch comes next")
        return self._student_logits.detach(), self._teacher_batch

    def batch_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The coming batch's inputs, as the student sees them (after any mixup or augmentation), and
        its labels: ``(batch_size, *input_shape)`` and ``(batch_size,)``, the rows of the observation in
        order. Not part of the observation: for checks and baselines that redo the training step by hand.
        The tensors are the env's own; clone them before changing them."""
        if self._student is None:
            raise RuntimeError("TemperatureKD-v0: call reset() before batch_data()")
        if self._epoch >= self.options.epochs:
            raise RuntimeError("TemperatureKD-v0: the episode has ended; no batch comes next")
        return self._x, self._y

    @property
    def student(self) -> torch.nn.Module | None:
        """The student being distilled in the current episode (read-only use)."""
        return self._student
