"""The algorithms KD-Gym trains by name (SB3, sb3-contrib and ours, all with SB3's constructor, learn,
save and load) and their hyperparameters, kept in YAML files in rl-zoo3's format
(``agents/hyperparams/<algo>.yml``: env id -> settings, shipped with the package). A policy that is not
one of the algorithm's own names is given by its dotted path (``agents.rlkd.policies.InstancePolicy``),
as rl-zoo3 reads it, so that ``python -m rl_zoo3.train --conf-file agents/hyperparams/ppo.yml`` trains
from the same file."""

from __future__ import annotations

import importlib
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
from agents.search.hill_climbing import HillClimbing
from agents.search.random_search import RandomSearch

# SB3 / sb3-contrib algorithms, and ours with the same constructor, learn, save and load.
ALGOS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO, "a2c": A2C, "sac": SAC, "td3": TD3, "ddpg": DDPG, "tqc": TQC, "maskable_ppo": MaskablePPO,
    "dqn": DQN, "qrdqn": QRDQN, "random_search": RandomSearch, "evolution": AgingEvolution,
    "hill_climbing": HillClimbing, "n2n": N2NAgent, "rlkd": RLKD, "iq": IQ, "iq_re": IQRE,
}  # fmt: skip
# Our policy classes by their bare name, which configs written before the YAML files gave dotted paths
# record (SB3's own names, e.g. "MlpPolicy", pass through to the algorithm).
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


def policy_class(policy: str | type) -> str | type:
    """What an algorithm's constructor takes for a YAML file's ``policy``: the class a dotted path names
    (imported, as rl-zoo3 does), one of our classes by its bare name (:data:`POLICIES`), or the name itself
    (the algorithm's own alias, such as ``MlpPolicy``)."""
    if not isinstance(policy, str):
        return policy
    if "." in policy:
        module, _, name = policy.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"policy={policy!r}: cannot import {name!r} from {module!r} ({error})") from error
    return POLICIES.get(policy, policy)


def policy_path(policy: Any) -> Any:
    """A YAML file's ``policy`` as the dotted path it stands for: one of our bare names (:data:`POLICIES`, as
    configs written before the dotted paths give it) as its class's path, anything else as it is. Compares
    the settings of runs trained before and after, without importing what a config names."""
    cls = POLICIES.get(policy) if isinstance(policy, str) else None
    return policy if cls is None else f"{cls.__module__}.{cls.__name__}"


def load_hyperparams(algo: str, env_id: str, directory: Path = HYPERPARAMS_DIR) -> dict[str, Any]:
    """The settings for ``env_id`` from ``<directory>/<algo>.yml`` (``policy`` as the file writes it: a
    dotted path or an alias; :func:`policy_class` resolves it)."""
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
    if "policy" in params:
        policy_class(params["policy"])  # a dotted path that does not import fails here, naming the file's value
    return params


