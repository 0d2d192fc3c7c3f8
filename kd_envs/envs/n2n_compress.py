"""N2NCompress-v0: compress a teacher into a student by removing layers, then shrinking the rest."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from kd_envs.envs.arguments import (
    JsonTaskSpec,
    check_bool,
    check_choice,
    check_device,
    check_folder,
    check_int,
    check_number,
    check_render_mode,
    is_bool,
    is_int,
    is_real,
    kwarg_error,
)
from kd_envs.envs.rendering import chart_frame
from kd_envs.tasks import (
    Task,
    TaskConfig,
    TrainConfig,
    count_parameters,
    make_task,
    resolve_task,
    task_json,
    task_or_config,
)
from kd_envs.tasks.architecture import DESCRIPTOR_FIELDS, Architecture, InvalidArchitecture
from kd_envs.tasks.compression import DistillConfig, StudentEvaluator
from kd_envs.tasks.tables import DEFAULT_TABLE, FULL_WIDTH, REMOVED, TABLE_KWARGS, TABLES, StudentTable, load_table
from kd_envs.tasks.training import OPTIMIZERS

# The authors' shrink factors (Ashok et al., 2018, Sec. 3.2).
DEFAULT_SHRINK_FACTORS = (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
REMOVE = 1  # in the removal stage; every other action keeps the layer
STAGES = ("removal", "shrink")
# What an episode decides: both stages (the joint single-episode mode), or one of them, as the authors'
# two runs do (stage 1 removal, then stage 2 shrinkage of stage 1's best student).
STAGE_MODES = ("both", "removal", "shrink")
DEGENERATE_REWARD = -1.0
# The end-of-episode rewards (the class docstring's Rewards section says what each computes).
REWARDS = ("n2n", "budget", "log_params", "constrained")
DEFAULT_PARAMETER_BUDGET = 0.1
# The budget masks enumerate the teacher's 2^n sets of kept layers.
MAX_BUDGET_LAYERS = 16
# The authors' soft constraint (anubhavashok/N2N, rl.py: getEpsilon, getConstrainedReward): epsilon falls to 0
# over 15 controller iterations of 5 rollouts each.
CONSTRAINT_ITERATIONS = 15
ROLLOUTS_PER_ITERATION = 5


def compression_reward(compression: float, accuracy: float, teacher_accuracy: float) -> float:
    """N2N's reward R = C(2 − C) · A / A_teacher (Ashok et al., Eq. 5), C = 1 − params_s / params_t."""
    return compression * (2.0 - compression) * accuracy / teacher_accuracy


def log_params_reward(accuracy: float, parameters: int) -> float:
    """−error · ln(params): the validation error 1 − A times the natural log of the student's parameters."""
    return -(1.0 - accuracy) * math.log(parameters)


def student_reward(reward: str, accuracy: float, parameters: int, teacher_accuracy: float,
                   teacher_parameters: int) -> float:
    """A valid student's score under the ``reward`` option before any search-level constraint (the class
    docstring's Rewards): ``"budget"`` A / A_teacher, ``"log_params"`` −(1 − A) · ln(params), else (``"n2n"``,
    and ``"constrained"`` before its constraint) C(2 − C) · A / A_teacher."""
    if reward == "budget":
        return accuracy / teacher_accuracy
    if reward == "log_params":
        return log_params_reward(accuracy, parameters)
    return compression_reward(1.0 - parameters / teacher_parameters, accuracy, teacher_accuracy)


def constraint_epsilon(iteration: int) -> float:
    """ε = max(0, 1 − it/15)^4: 1 at the first iteration, 0 from iteration 15 on, as the authors meant it.

    Their ``getEpsilon`` computes ``min(1, max(0, (1 - it/15)**4))``: the clamp comes after the fourth power,
    which is never negative, so past iteration 15 ε grows again, (1 − it/15)^4, back to 1 at iteration 30
    (:func:`authors_constraint_epsilon`), and from then on a student over the budget keeps its whole reward."""
    return max(0.0, 1.0 - iteration / CONSTRAINT_ITERATIONS) ** 4


def authors_constraint_epsilon(iteration: int) -> float:
    """The authors' ``getEpsilon`` as written: ``min(1, max(0, (1 - it/15)**4))`` (see :func:`constraint_epsilon`)."""
    return min(1.0, max(0.0, (1.0 - iteration / CONSTRAINT_ITERATIONS) ** 4))


def constrained_reward(reward: float, violates: bool, epsilon: float) -> float:
    """The authors' ``getConstrainedReward``: a student that breaks the constraint gets (ε − 1) + ε · R, which
    blends its reward R toward −1 as ε falls from 1 to 0; one that keeps it gets R."""
    return (epsilon - 1.0) + epsilon * reward if violates else reward


@dataclass(frozen=True)
class _Options:
    """The env's kwargs after validation, the one place they are checked (the layer indices of
    ``removed_layers`` again once the teacher is known): errors name the kwarg, its value and what is
    allowed. Numbers keep the type they came as: the students' cache keys are made of them."""

    shrink_factors: Any
    stages: str
    removed_layers: Any
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    kd_weight: float
    ce_weight: float
    training_seed: int | None
    cache_dir: str | Path | None
    cache_students: bool
    data_root: str | Path | None
    render_mode: str | None
    reward: str
    parameter_budget: float
    tabular: bool | str
    device: str | torch.device = "cpu"

    def __post_init__(self) -> None:
        env_id = "N2NCompress-v0"
        factors = self.shrink_factors
        if (isinstance(factors, (str, bytes)) or not isinstance(factors, (Sequence, np.ndarray)) or len(factors) == 0
                or not all(is_real(f) and 0.0 < f <= 1.0 for f in factors)):  # fmt: skip
            raise kwarg_error(env_id, "shrink_factors", factors, "a sequence of numbers in (0, 1]")
        if len(set(factors)) != len(factors):
            raise ValueError(f"{env_id}: shrink_factors={tuple(factors)} has repeats; expected distinct factors")
        check_choice(env_id, "stages", self.stages, STAGE_MODES)
        for name in ("epochs", "batch_size"):
            check_int(env_id, name, getattr(self, name), minimum=1)
        check_choice(env_id, "optimizer", self.optimizer, OPTIMIZERS)
        check_number(env_id, "lr", self.lr, 0.0, low_open=True)
        for name in ("kd_weight", "ce_weight"):
            check_number(env_id, name, getattr(self, name), 0.0)
        if self.training_seed is not None and (not is_int(self.training_seed) or self.training_seed < 0):
            raise kwarg_error(env_id, "training_seed", self.training_seed, "a non-negative int or None")
        check_folder(env_id, "cache_dir", self.cache_dir)
        check_bool(env_id, "cache_students", self.cache_students)
        check_folder(env_id, "data_root", self.data_root)
        check_render_mode(env_id, self.render_mode, N2NCompressEnv.metadata["render_modes"])
        check_choice(env_id, "reward", self.reward, REWARDS)
        check_number(env_id, "parameter_budget", self.parameter_budget, 0.0, 1.0, low_open=True, high_open=False)
        if not (is_bool(self.tabular) or self.tabular in TABLES):
            raise kwarg_error(env_id, "tabular", self.tabular, f"True, False or a table name in {sorted(TABLES)}")
        object.__setattr__(self, "device", check_device(env_id, self.device))


class N2NCompressEnv(JsonTaskSpec, gym.Env):
    r"""
    ## Description
    Network-to-network compression as a sequential decision problem (Ashok et al., *N2N Learning:
    Network to Network Compression via Policy Gradient Reinforcement Learning*, ICLR 2018). An episode
    edits a copy of the task's trained teacher in two stages, then trains the resulting student from
    scratch by distillation and scores it:

    1. **Layer removal**: one step per teacher layer, in order: keep (0) or remove (1).
    2. **Layer shrinkage**: one step per kept layer, in order: the index of a shrink factor in
       ``shrink_factors``; the layer keeps ``round(factor · width)`` channels (conv) or units (linear).

    ``stages="both"`` (the default) runs both stages in one episode. The paper's protocol runs them as
    two searches (the authors' ``run.py removal`` then ``run.py shrinkage --model <stage-1 model>``):
    ``stages="removal"`` episodes only remove layers (the kept ones keep their width), and
    ``stages="shrink"`` episodes only shrink the layers left after removing ``removed_layers`` (stage 1's
    best student, e.g. its ``info["removed_layers"]``). Rewards are always measured against the task's
    teacher, so the three modes score students on one scale (the authors measure stage 2's compression
    and accuracy against the stage-1 model and distil from it; here the teacher stays the teacher).

    The teacher is described by a layer spec (:class:`kd_envs.tasks.architecture.Architecture`): conv
    layers (conv → BatchNorm → ReLU, optionally a max pool), linear layers, residual blocks as spans of
    layers, and a fixed classifier head that is not part of the action sequence. Removal rewires each
    layer to whatever precedes it; a residual block keeps the layers left in its span and vanishes with
    the last of them; a shortcut whose shapes no longer agree becomes a 1x1 projection. Teachers:
    ``mnist1d-resnet`` (the default: a 1-D ResNet-14, 13 conv layers in a stem and six residual blocks,
    so 8^13 ≈ 5.5 · 10^11 students), ``mnist1d`` (1-D CNN, 3 layers, 511 students), ``mnist1d-vgg``
    (VGG-style, 6 layers), ``digits`` (MLP), and the CIFAR ResNets of ``cifar10-resnet56-resnet20`` /
    ``cifar100-resnet110-resnet20`` (from a local CIFAR folder).

    ## Action Space
    ``Discrete(max(2, K))``, K = ``len(shrink_factors)``: one space for both stages, so that any agent
    can act in it. In the removal stage 1 removes the layer and 0 keeps it (every other action also
    keeps it); in the shrink stage the action is the index of the factor (with a single factor, every
    action picks it). ``action_masks()`` (and the
    observation's ``action_mask``) allow only 0 and 1 in the removal stage and the K indices in the
    shrink stage, for sb3-contrib's ``MaskablePPO``; with ``reward="budget"`` they also leave out the
    decisions that would break the parameter budget (see Rewards). An action outside the space (or not
    one integer) raises ``ValueError``.

    ## Observation Space
    ``Dict`` of float32 ``Box`` es, n = number of teacher layers, A = ``action_space.n``:

    | Key           | Shape  | Meaning                                                               |
    |---------------|--------|-----------------------------------------------------------------------|
    | `layers`      | (n, 8) | every teacher layer's descriptor, each column over its teacher max   |
    | `stage`       | (2,)   | one-hot: removal, shrink                                              |
    | `position`    | (n,)   | one-hot: the teacher layer this step decides                          |
    | `kept`        | (n,)   | per layer: −1 undecided, 1 kept, 0 removed                            |
    | `shrink`      | (n,)   | per layer: −1 undecided, the chosen factor, 0 for a removed layer     |
    | `action_mask` | (A,)   | 1 for the actions valid now                                           |

    The descriptor follows the paper's x_t = (layer type, kernel size, stride, padding, number of
    outputs, skip-connection start, skip-connection end), with the max-pool size appended
    (:data:`kd_envs.tasks.architecture.DESCRIPTOR_FIELDS`; type 0 = linear, 1 = conv). An agent may read
    the whole sequence (``layers``) and the decisions so far; the raw descriptors are in the reset info.

    ## Rewards
    0 on every step but the last. At the end the student is trained from scratch for ``epochs`` epochs
    with ``ce_weight`` · CE(labels) + ``kd_weight`` · ‖z_student − z_teacher‖² (the authors: L2 alone,
    5 epochs, Adam 5e-4) and scored with A and A_teacher, the student's and the teacher's accuracy on the
    validation split, and C = 1 − params(student) / params(teacher). ``reward`` chooses the score:

    * ``"n2n"`` (the default): R = C(2 − C) · A / A_teacher (Ashok et al., Eq. 5).
    * ``"budget"``: a hard budget of ``parameter_budget`` · params(teacher), enforced as AMC does (He et
      al., *AMC: AutoML for Model Compression*, ECCV 2018): the action masks allow only the decisions
      after which some student within the budget is still reachable, so every episode ends with one, and
      R = A / A_teacher. A decision is allowed when some completion of the episode meets the budget with
      shapes that connect, where a completion keeps or removes each undecided layer and gives every
      undecided kept layer the smallest factor (its full width with ``stages="removal"``), as AMC
      compresses the later layers most. The masks are exact (they allow every decision from which a
      student within the budget can be reached) unless a wider layer can need fewer parameters than a
      narrower one, which only a residual shortcut's projection can cause; they never allow a decision
      from which none can. An agent that ignores the masks is clipped: a masked decision is replaced by
      the nearest allowed one (in the removal stage the other of keep and remove; in the shrink stage the
      allowed factor nearest in value to the chosen one, the smaller of two as near, which is AMC's clip
      of a too-wide layer to the widest allowed), and the step's info says ``clipped``. A budget no
      student can meet is refused when the env is made; teachers of more than 16 layers are refused
      (the masks enumerate the 2^n sets of kept layers).
    * ``"log_params"``: R = −(1 − A) · ln(params(student)): the validation error times the natural log
      of the student's parameter count (higher is better: small and accurate).
    * ``"constrained"``: the authors' soft constraint (``rl.py``: ``getConstrainedReward`` with
      ``--size_constraint``): a student with more than ``parameter_budget`` · params(teacher) parameters
      gets (ε − 1) + ε · R, its N2N reward blended toward −1, and one within the budget gets R. ε = max(0, 1
      − it/15)^4 falls from 1 to 0 over the first 15 iterations, it = the number of episodes ended since
      the last seeded reset, divided by 5 (the authors' rollouts per controller update), and stays 0: from
      the 76th episode on, a student over the budget gets −1. This is ε as the authors meant it; their code,
      ``min(1, max(0, (1 - it/15)**4))``, clamps after the fourth power, so past iteration 15 ε grows again
      and reaches 1 at iteration 30: from the 151st student on, their constraint no longer penalises at all.

    The test split is not used (the final report of a search retrains its best student, see
    ``agents.common.compression``). A degenerate student ends the episode with R = −1 (with
    ``"log_params"``: −ln(params(teacher)), below every valid student's) and no training: nothing left
    (every layer removed; the episode then ends right after the removal stage), shapes that cannot
    connect, or not fewer parameters than the teacher. With ``"budget"`` no episode that keeps to the
    masks, or is clipped to them, ends degenerate.

    ``training_seed=None`` draws the candidates' training seed from the env's seed at every
    ``reset(seed=...)`` and keeps it until the next seeded reset: within a seeded search an architecture
    always gets the same score, and a repeat can come from the cache.

    Training a candidate is the expensive part, so results are cached in memory and on disk
    (``<cache_dir>/students``) keyed by the teacher, the student's architecture, the training
    options and the training seed: a repeated architecture is free.

    ## Tabular benchmark
    ``tabular=True`` answers from a student table instead of training (NAS-Bench-201's way; the tables are
    :mod:`kd_envs.tasks.tables`): :data:`~kd_envs.tasks.tables.DEFAULT_TABLE`, ``n2n-vgg-v0``, holds every
    student of the VGG-style teacher (``task="mnist1d-vgg"``, ``stages="both"``,
    ``shrink_factors=(0.5, 1.0)``: 728 students), each scored by this env's proxy on the training seeds 0
    and 1 and by the final training (30 epochs) on evaluation seeds, so an episode costs microseconds
    instead of seconds (until its file is built, ``tabular=True`` says so); ``tabular="<name>"`` picks
    another table. The table fixes the kwargs that decide a score (``task``,
    ``shrink_factors``, ``stages``, ``removed_layers``, ``epochs``, ``batch_size``, ``optimizer``, ``lr``,
    ``kd_weight``, ``ce_weight``): one given another value than its default and the table's is refused.
    ``training_seed`` must be one of the table's proxy seeds, and with ``None`` a seeded reset draws one of
    them. Episodes, masks and rewards are computed as above, so a tabular episode is the live episode with
    the same kwargs and training seed (a test checks this on a tiny table); ``info["train_seconds"]`` is what
    the student's training took when the table was built and ``info["cached"]`` whether this env was asked
    for it before. The file is read only if its sha256 is the one recorded in code
    (``scripts/n2n_table.py`` builds it); nothing is trained and no data set or teacher is loaded
    (``env.unwrapped.task`` is None; the table, with its final-training results, is ``env.unwrapped.table``).

    ## Your own task
    ``task=Task.from_tensors(...)`` (:meth:`kd_envs.tasks.Task.from_tensors`), or its factory ``"module:function"``,
    compresses your teacher on your data when the teacher is a model of one of the families with your weights: built
    by ``kd_envs.tasks.build_model(ModelConfig(...), input_shape, num_classes)`` (``mlp``, ``cnn1d``, ``resnet``,
    ``vgg``, ``resnet1d``) or an ``ArchitectureNet``, and trained or loaded as you like. Its layer spec is read off
    the module and checked against its parameter count. Refused, with the reason: any other module (N2N edits the
    layers of a layer spec, and an arbitrary ``nn.Module`` has none to read), a module whose spec does not describe
    it (its parameter count differs: a family's class changed by hand), and ``tabular`` (a table holds one named
    task's students). Candidates are keyed in the student cache by the teacher's and the data's sha256.

    ## Devices
    ``device="cuda"`` (or ``"cuda:<n>"``, ``"mps"``) trains and scores every candidate there: the task's
    data and teacher are moved once, each candidate's weights and batch orders are drawn from CPU generators
    seeded as on the CPU, and only its accuracies come back. Results trained off the CPU are cached under
    keys of their own, so a CPU search never reads them. A device this machine does not have is refused
    when the env is made, by name.

    ## Starting State
    The first layer of the removal stage, nothing decided (with ``stages="shrink"``: the first layer left
    after ``removed_layers``, in the shrink stage).

    ## Episode End
    Terminates after the last shrink decision (or after the removal stage when nothing is left, or
    when ``stages="removal"``). No truncation: an episode has at most 2n steps.

    ## Arguments
    | Kwarg            | Default       | Meaning                                                          |
    |------------------|---------------|------------------------------------------------------------------|
    | `task`           | `"mnist1d-resnet"` | a name in `kd_envs.tasks.TASKS`, a `TaskConfig` or its dict |
    |                  |               | or a `Task` of your own, or its factory `"module:function"` (below) |
    | `shrink_factors` | (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0) | the shrink stage's choices, in (0, 1]     |
    | `stages`         | `"both"`      | `"both"`, `"removal"` or `"shrink"`: what an episode decides (above) |
    | `removed_layers` | ()            | with `stages="shrink"`: teacher layers removed before shrinking  |
    | `epochs`         | 5             | each candidate's training (a search proxy, the authors' 5; 2–9 s here) |
    | `batch_size`     | 256           | candidate training batch size                                    |
    | `optimizer`      | `"adam"`      | `"adam"` or `"sgd"` (momentum 0.9, cosine schedule)              |
    | `lr`             | 1e-2          | candidate learning rate                                          |
    | `kd_weight`      | 1.0           | λ on the logit L2 term                                           |
    | `ce_weight`      | 1.0           | weight of the cross-entropy term (0 for the authors' loss)       |
    | `training_seed`  | None          | seed of each candidate's weights and batch order (see below)     |
    | `cache_dir`      | None          | teacher and student cache (default `$KD_GYM_CACHE` or `~/.cache/kd_gym`) |
    | `cache_students` | True          | keep student results on disk too (False: in this env's memory only) |
    | `data_root`      | None          | folder of the CIFAR files (default `$KD_GYM_CIFAR_ROOT`)         |
    | `render_mode`    | None          | None or `"rgb_array"` (see Rendering)                            |
    | `reward`         | `"n2n"`       | `"n2n"`, `"budget"`, `"log_params"` or `"constrained"` (see Rewards) |
    | `parameter_budget` | 0.1         | for `"budget"`, `"constrained"`: a fraction in (0, 1] of the teacher |
    | `tabular`        | False         | True (the default table) or a table's name: answer from it (above) |
    | `device`         | `"cpu"`       | `"cpu"`, `"cuda"`, `"cuda:<n>"` or `"mps"`: where candidates train |

    Errors name the bad kwarg, its value and what is allowed; a bool is not an integer, nor is a float
    (``epochs=2.5``), and a string is not a number (``lr="0.01"``). A ``TaskConfig`` given as ``task`` is
    kept in ``env.spec.kwargs`` as its dict, so the spec stores as JSON (``EnvSpec.to_json``).

    The ids are registered when ``kd_envs`` is imported. A process that has not imported it, such as a
    worker of SB3's ``SubprocVecEnv`` (started by forkserver or spawn), makes the env as
    ``gym.make("kd_envs:N2NCompress-v0")`` (``make_vec_env("kd_envs:N2NCompress-v0", ...)``): the prefix
    imports ``kd_envs`` first.

    ## Info
    ``reset`` gives ``descriptors`` (raw, (n, 8)), ``teacher_parameters`` and ``teacher_accuracy``. The
    last step gives ``architecture`` (the student's spec as a dict), ``architecture_summary``,
    ``student_parameters``, ``teacher_parameters``, ``compression`` (C), ``accuracy`` (A),
    ``teacher_accuracy``, ``removed_layers`` (teacher indices), ``train_seconds``, ``cached`` and
    ``degenerate`` (why the student is degenerate, else ""). With ``reward="budget"`` every step also gives
    ``clipped`` (whether its decision was replaced) and the last also ``parameter_budget`` (in parameters) and
    ``clipped_decisions``; with ``reward="constrained"`` the last gives ``parameter_budget``,
    ``over_budget``, ``iteration`` and ``constraint_epsilon`` (ε).

    ## Rendering
    ``metadata["render_modes"]`` is ``["rgb_array"]``: ``render()`` returns the decisions so far as a
    (240, 320, 3) uint8 array drawn with matplotlib, one bar per teacher layer (its kept width in blue, a
    removed layer as a short red bar, an undecided one in grey, the layer this step decides outlined);
    with ``render_mode=None`` (the default) it returns None. Any other mode raises ``ValueError`` when the
    env is made, as in every KD-Gym env (through ``gym.make``, ``"human"`` and ``"rgb_array_list"`` are
    Gymnasium's own wrappers around ``"rgb_array"``).

    ## Version History
    * v0: initial version; the deep default teacher (``mnist1d-resnet``), the 5-epoch proxy and the
      ``stages`` / ``removed_layers`` options were added before any release; later, without changing any
      episode: ``render_mode="rgb_array"`` (``gym.make(..., render_mode="rgb_array")``, as SB3's
      ``make_vec_env`` calls it, used to be refused), kwargs of a wrong type refused by name, a
      ``TaskConfig`` stored in the spec as its dict; the ``reward`` options ``"budget"``, ``"log_params"``
      and ``"constrained"`` with ``parameter_budget``, and ``tabular`` (the default episodes are unchanged); a
      task of your own (``Task`` or ``"module:function"``) and ``device`` (on the CPU, the episodes of before).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        task: str | TaskConfig | dict[str, Any] | Task = "mnist1d-resnet",
        shrink_factors: Sequence[float] = DEFAULT_SHRINK_FACTORS,
        stages: str = "both",
        removed_layers: Sequence[int] = (),
        epochs: int = 5,
        batch_size: int = 256,
        optimizer: str = "adam",
        lr: float = 1e-2,
        kd_weight: float = 1.0,
        ce_weight: float = 1.0,
        training_seed: int | None = None,
        cache_dir: str | Path | None = None,
        cache_students: bool = True,
        data_root: str | None = None,
        render_mode: str | None = None,
        reward: str = "n2n",
        parameter_budget: float = DEFAULT_PARAMETER_BUDGET,
        tabular: bool | str = False,
        device: str = "cpu",
    ):
        self.options = _Options(
            shrink_factors, stages, removed_layers, epochs, batch_size, optimizer, lr, kd_weight, ce_weight,
            training_seed, cache_dir, cache_students, data_root, render_mode, reward, parameter_budget, tabular,
            device,
        )  # fmt: skip
        self.table: StudentTable | None = None
        try:  # a named task's config, or a ready task of your own (given, or made by its factory)
            resolved = task_or_config(task)
        except ValueError as error:  # (its kind kept: --verify tells a TaskFactoryError apart)
            raise type(error)(f"N2NCompress-v0: {error}") from None
        if tabular and isinstance(resolved, Task) and resolved.config is None:
            raise ValueError(f"N2NCompress-v0: tabular={tabular!r} with a task of your own ({resolved!r}); a table "
                             "holds the students of one named task's teacher: give tabular=False")  # fmt: skip
        if tabular:  # True or a table's name
            given = dict(task=task, shrink_factors=shrink_factors, stages=stages, removed_layers=removed_layers,
                         epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, kd_weight=kd_weight,
                         ce_weight=ce_weight)  # fmt: skip
            self.table = self._open_table(tabular if isinstance(tabular, str) else DEFAULT_TABLE, given)
            task, shrink_factors, stages, removed_layers, epochs, batch_size, optimizer, lr, kd_weight, ce_weight = (
                self.table.env_kwargs[name] for name in TABLE_KWARGS
            )
            if training_seed is not None and training_seed not in self.table.proxy_seeds:
                raise kwarg_error("N2NCompress-v0", "training_seed", training_seed,
                                  f"None or one of the table's proxy seeds {self.table.proxy_seeds}")  # fmt: skip
        self.shrink_factors = tuple(float(f) for f in shrink_factors)
        self.stages = stages
        self.render_mode = render_mode
        self.reward = reward
        self.parameter_budget = parameter_budget
        try:
            training = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr)
            self.distill_config = DistillConfig(training, kd_weight=kd_weight, ce_weight=ce_weight)
        except ValueError as e:
            raise ValueError(f"N2NCompress-v0: {e}") from None
        self.training_seed = training_seed
        if self.table is not None:  # nothing to train: the teacher is the table's
            self.task: Task | None = None
            self.evaluator: StudentEvaluator | None = None
            self.teacher_architecture: Architecture = Architecture.from_dict(self.table.teacher["architecture"])
            self.teacher_parameters = int(self.table.teacher["parameters"])
            self.teacher_accuracy = float(self.table.teacher["val_accuracy"])
            self._asked: set[tuple[str, int]] = set()
        else:
            device = self.options.device
            if isinstance(resolved, Task):
                task_object = resolved
            else:
                task_object = make_task(resolved, cache_dir=cache_dir, data_root=data_root, device=device)
            self.task = task_object.to(device)
            try:
                self.teacher_architecture = self.task.teacher_architecture()
            except ValueError as error:
                raise ValueError(
                    f"N2NCompress-v0: cannot compress the teacher of {self.task!r}: {error}. N2N removes and shrinks "
                    "the layers of a layer spec; a teacher of your own can be compressed when it is a model of one of "
                    "the families with your weights (kd_envs.tasks.build_model(ModelConfig(...), input_shape, "
                    "num_classes), then load_state_dict)"
                ) from None
            self.teacher_parameters = count_parameters(self.task.teacher)
            self.evaluator = StudentEvaluator(self.task, cache_dir=cache_dir, persist=cache_students, device=device)
            self.teacher_accuracy = self.evaluator.teacher_val_accuracy
        if not self.teacher_accuracy > 0:
            if self.task is None:
                teacher = resolve_task(task).teacher
            else:
                teacher = self.task.name if self.task.config is None else self.task.config.teacher
            raise ValueError(
                f"N2NCompress-v0: the teacher ({teacher}) scores 0 on the validation split, so the "
                "reward's A / A_teacher is undefined; train the teacher longer or give the split more samples"
            )

        self.num_layers = n = len(self.teacher_architecture.layers)
        self.removed_layers = self._check_removed_layers(removed_layers)
        self.descriptors = self.teacher_architecture.descriptors()
        scale = np.maximum(self.descriptors.max(axis=0), 1.0)
        self._layers_obs = (self.descriptors / scale).astype(np.float32)
        num_actions = max(2, len(self.shrink_factors))
        self.action_space = spaces.Discrete(num_actions)
        self.observation_space = spaces.Dict(
            {
                "layers": spaces.Box(0.0, 1.0, (n, len(DESCRIPTOR_FIELDS)), np.float32),
                "stage": spaces.Box(0.0, 1.0, (2,), np.float32),
                "position": spaces.Box(0.0, 1.0, (n,), np.float32),
                "kept": spaces.Box(-1.0, 1.0, (n,), np.float32),
                "shrink": spaces.Box(-1.0, 1.0, (n,), np.float32),
                "action_mask": spaces.Box(0.0, 1.0, (num_actions,), np.float32),
            }
        )
        self._episode_seed: int | None = None
        self._stage = 0
        self._cursor = 0  # index into the current stage's sequence of layers
        self._sequence: list[int] = []
        self._kept = np.full(n, -1.0, dtype=np.float32)
        self._shrink = np.full(n, -1.0, dtype=np.float32)
        self.budget_parameters = parameter_budget * self.teacher_parameters
        self._search_episodes = 0  # episodes ended since the last seeded reset (the soft constraint's clock)
        self._mask: np.ndarray | None = None  # the budget mask of the current step, once computed
        self._clipped = 0
        if reward == "budget":
            self._feasible_kept_sets = self._budget_feasibility()

    # ---- Gymnasium API ---------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None or self._episode_seed is None:
            # One training seed per seeded search: an architecture's score is then a function of it.
            if self.table is not None:  # one of the seeds the table was scored on
                drawn = self.table.proxy_seeds[int(self.np_random.integers(len(self.table.proxy_seeds)))]
            else:
                drawn = int(self.np_random.integers(2**31 - 1))
            self._episode_seed = drawn if self.training_seed is None else int(self.training_seed)
            self._search_episodes = 0
        self._mask, self._clipped = None, 0
        self._stage, self._cursor = 0, 0
        self._sequence = list(range(self.num_layers))
        self._kept.fill(-1.0)
        self._shrink.fill(-1.0)
        if self.stages == "shrink":  # stage 1 was decided by an earlier search
            self._kept.fill(1.0)
            self._kept[list(self.removed_layers)] = 0.0
            self._shrink[list(self.removed_layers)] = 0.0
            self._stage, self._sequence = 1, [i for i in range(self.num_layers) if self._kept[i] == 1.0]
        info = {
            "descriptors": self.descriptors.copy(),
            "teacher_parameters": self.teacher_parameters,
            "teacher_accuracy": self.teacher_accuracy,
        }
        return self._observation(), info

    def step(self, action):
        if not self._sequence:
            raise RuntimeError("N2NCompress-v0: step() called before reset() or after the episode ended")
        a = self._check_action(action)
        layer = self._sequence[self._cursor]
        # The decision: remove or keep (removal stage), a factor index (shrink stage).
        decision = (REMOVE if a == REMOVE else 0) if self._stage == 0 else min(a, len(self.shrink_factors) - 1)
        step_info: dict[str, Any] = {"stage": STAGES[self._stage], "layer": layer}
        if self.reward == "budget":
            clipped = self._clip(decision)
            step_info["clipped"] = clipped != decision
            self._clipped += step_info["clipped"]
            decision = clipped
        self._mask = None
        if self._stage == 0:
            self._kept[layer] = 0.0 if decision == REMOVE else 1.0
            if decision == REMOVE:
                self._shrink[layer] = 0.0
        else:
            self._shrink[layer] = self.shrink_factors[decision]
        self._cursor += 1
        if self._cursor < len(self._sequence):
            return self._observation(), 0.0, False, False, step_info
        if self._stage == 0:
            kept = [i for i in range(self.num_layers) if self._kept[i] == 1.0]
            if kept and self.stages == "both":
                self._stage, self._cursor, self._sequence = 1, 0, kept
                return self._observation(), 0.0, False, False, step_info
            if not kept:
                obs = self._observation()
                self._sequence = []
                info = self._degenerate_info(None, 0, "nothing left: every layer removed")
                return obs, self._end(self._degenerate_reward(), info, step_info), True, False, info
        obs = self._observation()
        self._sequence = []
        reward, info = self._score()
        return obs, self._end(reward, info, step_info), True, False, info

    def action_masks(self) -> np.ndarray:
        """The actions valid now (bool, shape (A,)), for sb3-contrib's MaskablePPO."""
        mask = np.zeros(self.action_space.n, dtype=bool)
        if not self._sequence:
            return mask
        if self.reward == "budget" and self._cursor < len(self._sequence):  # (the terminal observation: as n2n)
            if self._mask is None:
                self._mask = self._budget_mask()
            return self._mask.copy()
        mask[: 2 if self._stage == 0 else len(self.shrink_factors)] = True
        return mask

    def render(self) -> np.ndarray | None:
        """With ``render_mode="rgb_array"``: the decisions so far as an RGB array of shape (240, 320, 3),
        uint8, one bar per teacher layer: its kept width (the shrink factor; 1 until decided) in blue, a
        removed layer as a short red bar, an undecided one in grey, the layer this step decides outlined.
        With ``render_mode=None``: None."""
        if self.render_mode is None:
            return None

        def draw(axes) -> None:
            heights, colours = [], []
            for kept, shrink in zip(self._kept, self._shrink):
                if kept == 0.0:
                    heights.append(0.05), colours.append("tab:red")
                else:
                    heights.append(1.0 if shrink < 0 else float(shrink))
                    colours.append("tab:grey" if kept < 0 else "tab:blue")
            bars = axes.bar(range(self.num_layers), heights, color=colours)
            axes.set_xticks(range(self.num_layers))
            if self._sequence:
                bars[self._sequence[min(self._cursor, len(self._sequence) - 1)]].set(edgecolor="black", linewidth=2)
                title = f"{STAGES[self._stage]} stage"
            else:
                title = "decided" if (self._kept >= 0).all() else "not started"
            axes.set_title(title, fontsize=9)
            axes.set_ylim(0.0, 1.05)
            axes.set_xlabel("teacher layer", fontsize=8)
            axes.set_ylabel("kept width", fontsize=8)

        return chart_frame(draw)

    # ---- the student ------------------------------------------------------------------------------
    def student_architecture(self) -> Architecture:
        """The architecture the decisions so far give (undecided layers kept at full width)."""
        keep = [k != 0.0 for k in self._kept]
        factors = [1.0 if s <= 0 else float(s) for s, k in zip(self._shrink, keep) if k]
        return self.teacher_architecture.remove_layers(keep).shrink(factors)

    def _score(self) -> tuple[float, dict[str, Any]]:
        arch = self.student_architecture()
        parameters = arch.num_parameters()
        try:
            arch.layer_shapes()
        except InvalidArchitecture as e:
            return self._degenerate_reward(), self._degenerate_info(arch, parameters, f"shapes do not connect: {e}")
        if parameters >= self.teacher_parameters:
            why = f"not smaller than the teacher ({parameters} >= {self.teacher_parameters} parameters)"
            return self._degenerate_reward(), self._degenerate_info(arch, parameters, why)
        if self.table is None:
            result = self.evaluator.evaluate(arch, self.distill_config, self._episode_seed)
        else:
            result = self._table_result(parameters)
        accuracy = result["val_accuracy"]
        # "constrained" applies its constraint in _end
        reward = student_reward(self.reward, accuracy, parameters, self.teacher_accuracy, self.teacher_parameters)
        return reward, self._final_info(arch, parameters, accuracy, result["train_seconds"], result["cached"], "")

    def student_code(self) -> str:
        """The decisions so far as a table code (:mod:`kd_envs.tasks.tables`): per teacher layer ``-`` removed,
        the index of its shrink factor, or ``+`` kept at full width (decided by the removal stage alone)."""
        codes = []
        for kept, shrink in zip(self._kept, self._shrink):
            if kept == 0.0:
                codes.append(REMOVED)
            else:
                codes.append(FULL_WIDTH if shrink < 0 else str(self.shrink_factors.index(float(shrink))))
        return "".join(codes)

    def _table_result(self, parameters: int) -> dict[str, Any]:
        code, seed = self.student_code(), self._episode_seed
        result = self.table.proxy(code, seed)
        if result["parameters"] != parameters:
            raise RuntimeError(f"N2NCompress-v0: table {self.table.name} gives student {code} "
                               f"{result['parameters']} parameters, the env {parameters}: the table was built "
                               "from another version")  # fmt: skip
        cached = (code, seed) in self._asked
        self._asked.add((code, seed))
        return {**result, "cached": cached}

    def _open_table(self, name: str, given: dict[str, Any]) -> StudentTable:
        """The table, after checking that no kwarg it fixes was given another value than its default."""
        table = load_table(name)
        defaults = inspect.signature(type(self).__init__).parameters

        def same(name: str, a: Any, b: Any) -> bool:
            if name == "task":  # (a named task's Task object: its config)
                return resolve_task(task_json(a)) == resolve_task(task_json(b))
            if name in ("shrink_factors", "removed_layers"):
                return tuple(a) == tuple(b)
            return a == b

        for name in TABLE_KWARGS:
            value, fixed = given[name], table.env_kwargs[name]
            if not same(name, value, defaults[name].default) and not same(name, value, fixed):
                raise kwarg_error("N2NCompress-v0", name, value, f"{fixed!r} with tabular: table {table.name} fixes it")
        return table

    def _degenerate_reward(self) -> float:
        # Under "log_params" a valid student scores above −ln(params_teacher) (error ≤ 1, fewer parameters).
        return -math.log(self.teacher_parameters) if self.reward == "log_params" else DEGENERATE_REWARD

    def _end(self, reward: float, info: dict[str, Any], step_info: dict[str, Any]) -> float:
        """The episode's reward after the search-level options (the budget's record, the soft constraint)."""
        iteration = self._search_episodes // ROLLOUTS_PER_ITERATION
        self._search_episodes += 1
        if self.reward == "budget":
            info["clipped"] = step_info["clipped"]
            info["parameter_budget"] = self.budget_parameters
            info["clipped_decisions"] = int(self._clipped)
        elif self.reward == "constrained":
            over = not info["degenerate"] and info["student_parameters"] > self.budget_parameters
            epsilon = constraint_epsilon(iteration)
            info.update(parameter_budget=self.budget_parameters, over_budget=over, iteration=iteration,
                        constraint_epsilon=epsilon)  # fmt: skip
            if not info["degenerate"]:
                reward = constrained_reward(reward, over, epsilon)
        return reward

    # ---- the budget (reward="budget") -------------------------------------------------------------
    def _budget_feasibility(self) -> np.ndarray:
        """Whether each set of kept layers (bit i: layer i kept) has a student within the budget: shapes
        that connect and, every kept layer at the smallest factor (at full width with ``stages="removal"``),
        at most ``parameter_budget`` of the teacher's parameters. Raises if no episode could end feasible."""
        n = self.num_layers
        if n > MAX_BUDGET_LAYERS:
            raise ValueError(
                f"N2NCompress-v0: reward='budget' with a teacher of {n} layers; the budget masks "
                f"enumerate the 2^n sets of kept layers: expected at most {MAX_BUDGET_LAYERS} layers"
            )
        feasible = np.zeros(2**n, dtype=bool)
        smallest = math.inf
        for kept_set in range(1, 2**n):
            keep = [bool(kept_set >> i & 1) for i in range(n)]
            if self.stages == "shrink" and keep != [i not in self.removed_layers for i in range(n)]:
                continue
            parameters = self._smallest_completion(keep, {})
            if parameters is not None:
                smallest = min(smallest, parameters)
                feasible[kept_set] = self._within_budget(parameters)
        if not feasible.any():
            least = smallest / self.teacher_parameters
            raise kwarg_error("N2NCompress-v0", "parameter_budget", self.parameter_budget,
                              f"a fraction of the teacher's parameters that a student can meet: the smallest "
                              f"student {'of these stages ' if self.stages != 'both' else ''}has {smallest} "
                              f"parameters, {least:.4g} of the teacher's {self.teacher_parameters}")  # fmt: skip
        return feasible

    def _within_budget(self, parameters: int) -> bool:
        return parameters <= self.budget_parameters and parameters < self.teacher_parameters

    def _smallest_completion(self, keep: Sequence[bool], factors: dict[int, float]) -> int | None:
        """Parameters of the student that keeps ``keep`` with the decided ``factors`` (teacher layer ->
        factor) and every other kept layer at the smallest factor (full width with ``stages="removal"``);
        None where nothing is left or the shapes do not connect."""
        if not any(keep):
            return None
        smallest = 1.0 if self.stages == "removal" else min(self.shrink_factors)
        arch = self.teacher_architecture.remove_layers(keep)
        try:
            arch.layer_shapes()
        except InvalidArchitecture:
            return None
        kept = [i for i, k in enumerate(keep) if k]
        return arch.shrink([factors.get(i, smallest) for i in kept]).num_parameters()

    def _budget_mask(self) -> np.ndarray:
        """The decisions now that leave a student within the budget reachable (see Rewards)."""
        mask = np.zeros(self.action_space.n, dtype=bool)
        layer = self._sequence[self._cursor]
        if self._stage == 0:  # bits of the decided layers, this one's, and every completion of the rest
            prefix = sum(1 << i for i in range(layer) if self._kept[i] == 1.0)
            rest = np.arange(2 ** (self.num_layers - layer - 1), dtype=np.int64) << (layer + 1)
            mask[0] = self._feasible_kept_sets[prefix + (1 << layer) + rest].any()
            mask[REMOVE] = self._feasible_kept_sets[prefix + rest].any()
            return mask
        keep = [k != 0.0 for k in self._kept]
        decided = {i: float(f) for i, f in enumerate(self._shrink) if f > 0}
        for index, factor in enumerate(self.shrink_factors):
            parameters = self._smallest_completion(keep, {**decided, layer: factor})
            mask[index] = parameters is not None and self._within_budget(parameters)
        return mask

    def _clip(self, decision: int) -> int:
        """The decision itself where the budget mask allows it, else the nearest one it allows: the other
        of keep / remove, or the allowed factor nearest in value (the smaller of two as near)."""
        allowed = self.action_masks()
        if allowed[decision]:
            return decision
        if self._stage == 0:
            return 0 if decision == REMOVE else REMOVE
        wanted = self.shrink_factors[decision]
        options = [i for i in range(len(self.shrink_factors)) if allowed[i]]
        return min(options, key=lambda i: (abs(self.shrink_factors[i] - wanted), self.shrink_factors[i]))

    def _degenerate_info(self, arch: Architecture | None, parameters: int, why: str) -> dict[str, Any]:
        return self._final_info(arch, parameters, 0.0, 0.0, False, why)

    def _final_info(self, arch, parameters, accuracy, seconds, cached, degenerate) -> dict[str, Any]:
        return {
            "architecture": None if arch is None else arch.to_dict(),
            "architecture_summary": "(no layers)" if arch is None else arch.describe(),
            "student_parameters": parameters,
            "teacher_parameters": self.teacher_parameters,
            "compression": 1.0 - parameters / self.teacher_parameters,
            "accuracy": accuracy,
            "teacher_accuracy": self.teacher_accuracy,
            "removed_layers": [i for i in range(self.num_layers) if self._kept[i] == 0.0],
            "train_seconds": seconds,
            "training_seed": self._episode_seed,
            "cached": cached,
            "degenerate": degenerate,
        }

    # ---- helpers -----------------------------------------------------------------------------------
    def _check_removed_layers(self, removed_layers: Sequence[int]) -> tuple[int, ...]:
        name = f"N2NCompress-v0: removed_layers={removed_layers!r}"
        try:
            removed = tuple(removed_layers)
        except TypeError:
            raise ValueError(f"{name}; expected a sequence of layer indices") from None
        if any(not isinstance(i, (int, np.integer)) or isinstance(i, bool) for i in removed):
            raise ValueError(f"{name}; expected integers (teacher layer indices)")
        removed = tuple(int(i) for i in removed)
        if removed and self.stages != "shrink":
            raise ValueError(f"{name} with stages={self.stages!r}; layers are removed beforehand only with "
                             "stages='shrink'")  # fmt: skip
        if any(not 0 <= i < self.num_layers for i in removed) or len(set(removed)) != len(removed):
            raise ValueError(f"{name}; expected distinct indices in [0, {self.num_layers})")
        if len(removed) == self.num_layers:
            raise ValueError(f"{name} removes every one of the teacher's {self.num_layers} layers")
        return tuple(sorted(removed))

    def _check_action(self, action) -> int:
        arr = np.asarray(action)
        if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"N2NCompress-v0: action {action!r}: expected one integer")
        a = int(arr.reshape(-1)[0])
        if not 0 <= a < self.action_space.n:
            raise ValueError(f"N2NCompress-v0: action {a} is outside the action space Discrete({self.action_space.n})")
        return a

    def _observation(self) -> dict[str, np.ndarray]:
        n = self.num_layers
        stage = np.zeros(2, dtype=np.float32)
        position = np.zeros(n, dtype=np.float32)
        if self._sequence:
            stage[self._stage] = 1.0
            position[self._sequence[min(self._cursor, len(self._sequence) - 1)]] = 1.0
        return {
            "layers": self._layers_obs.copy(),
            "stage": stage,
            "position": position,
            "kept": self._kept.copy(),
            "shrink": self._shrink.copy(),
            "action_mask": self.action_masks().astype(np.float32),
        }
