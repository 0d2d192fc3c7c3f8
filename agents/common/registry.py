"""The algorithms KD-Gym trains by name (SB3, sb3-contrib and ours, all with SB3's constructor, learn,
save and load) and their hyperparameters, kept in YAML files in rl-zoo3's format
(``agents/hyperparams/<algo>.yml``: env id -> settings, shipped with the package)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from sb3_contrib import QRDQN, TQC, MaskablePPO
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.iq.iq import IQ, IQRE
from agents.n2n.n2n import N2NAgent
from agents.rlkd.policies import InstancePolicy
from agents.rlkd.rlkd import RLKD
from agents.search.evolution import AgingEvolution
from agents.search.random_search import RandomSearch

# SB3 / sb3-contrib algorithms, and ours with the same constructor, learn, save and load.
ALGOS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO, "a2c": A2C, "sac": SAC, "td3": TD3, "ddpg": DDPG, "tqc": TQC, "maskable_ppo": MaskablePPO,
    "dqn": DQN, "qrdqn": QRDQN, "random_search": RandomSearch, "evolution": AgingEvolution,
    "n2n": N2NAgent, "rlkd": RLKD, "iq": IQ, "iq_re": IQRE,
}  # fmt: skip
# Our policy classes, by the name a YAML file gives them (SB3's own names pass through).
POLICIES: dict[str, type] = {"InstancePolicy": InstancePolicy}
# Package data of ``agents`` (shipped in the wheel), found through importlib rather than a file path.
HYPERPARAMS_DIR = Path(str(resources.files("agents") / "hyperparams"))
# rl-zoo3 keys handled here rather than passed to the algorithm. ``env_kwargs`` in a YAML file apply to
# the *training* env only (RLKD's efficient exploration); entries evaluate on the env kwargs of the run.
# ``n_students`` (search envs only) is a search's budget in students proposed (finished episodes); it
# replaces ``n_timesteps``, so that searchers whose episodes differ in length get equal budgets.
ZOO_KEYS = {"n_timesteps", "n_students", "policy", "n_envs", "noise_type", "noise_std", "env_kwargs"}
_UNSUPPORTED_ZOO_KEYS = {"normalize", "frame_stack", "env_wrapper", "callback", "vec_env_wrapper"}


def algo_class(algo: str) -> type[BaseAlgorithm]:
    if algo not in ALGOS:
        raise ValueError(f"algo={algo!r}: expected one of {sorted(ALGOS)}")
    return ALGOS[algo]


def load_hyperparams(algo: str, env_id: str, directory: Path = HYPERPARAMS_DIR) -> dict[str, Any]:
    """The settings for ``env_id`` from ``<directory>/<algo>.yml``."""
    algo_class(algo)
    path = Path(directory) / f"{algo}.yml"
    if not path.is_file():
        raise FileNotFoundError(f"no hyperparameter file {path} for algo {algo!r}")
    table = yaml.safe_load(path.read_text()) or {}
    if env_id not in table:
        raise KeyError(f"{path} has no entry for {env_id!r}; it has {sorted(table)}")
    params = dict(table[env_id])
    unsupported = _UNSUPPORTED_ZOO_KEYS & set(params)
    if unsupported:
        raise ValueError(f"{path}[{env_id}] uses rl-zoo3 keys {sorted(unsupported)} that KD-Gym does not support")
    return params


