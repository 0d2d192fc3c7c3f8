"""Aging (regularized) evolution on N2NCompress-v0 (Real et al., 2019), the architecture-search
field's strongest simple baseline: tournament selection, one mutation per child, the oldest dies."""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

import numpy as np
import torch
from stable_baselines3.common.type_aliases import GymEnv

import kd_envs  # noqa: F401  (registers the environments)
from agents.search.genotypes import Genotype, GenotypeSearch
from agents.search.policies import UniformPolicy


class AgingEvolution(GenotypeSearch):
    """Regularized (aging) evolution (Real et al., "Regularized Evolution for Image Classifier
    Architecture Search", AAAI 2019, Algorithm 1) on N2NCompress-v0.

    A genotype is the env's decisions, keyed by (stage, teacher layer): keep/remove for every layer
    and a shrink factor index for every layer it kept. The first ``population_size`` students are
    random (uniform over the valid actions, as :class:`RandomSearch`). After that each episode
    samples ``sample_size`` members of the population uniformly, takes the best (by the episode's
    reward) as the parent and plays a child that differs from it by one mutation: one decision of the
    parent's episode changed to another valid action, which removes or restores a layer, or changes one
    kept layer's shrink factor. The child joins the population and the oldest member dies. A restored
    layer takes the shrink factor its genotype still holds from an ancestor, else a random one.
    Repeated students are re-evaluated (with a fixed ``training_seed`` the env's cache makes that free).

    Real et al. use P = 100, S = 25 for 20,000 models; the defaults (P = 20, S = 5) keep the same ratio
    for searches of a few hundred students.

    The population, its count and the settings are saved with the agent (SB3's ``save``); ``predict``
    outside ``learn`` draws uniformly, as :class:`RandomSearch`'s.

    :param policy: ``"EvolutionPolicy"`` (the uniform policy that fills the decisions a genotype lacks).
    :param population_size: P, the number of living members.
    :param sample_size: S, the tournament size (1 <= S <= P).
    Other parameters: see :class:`RandomSearch`.
    """

    policy_aliases: ClassVar[dict[str, type[UniformPolicy]]] = {"EvolutionPolicy": UniformPolicy}

    def __init__(
        self,
        policy: str | type[UniformPolicy],
        env: GymEnv | None,
        seed: int | None = None,
        population_size: int = 20,
        sample_size: int = 5,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        device: str | torch.device = "cpu",
        _init_setup_model: bool = True,
    ):
        for name, value in (("population_size", population_size), ("sample_size", sample_size)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"AgingEvolution: {name}={value!r}; expected an integer >= 1")
        if sample_size > population_size:
            raise ValueError(f"AgingEvolution: sample_size={sample_size} exceeds population_size={population_size}")
        super().__init__(policy, env, seed, tensorboard_log, verbose, device, _init_setup_model=False)
        self.population_size, self.sample_size = int(population_size), int(sample_size)
        # Members: {"genotype": {(stage, layer): action}, "decisions": [((stage, layer), valid actions)], "reward"}
        self.population: deque[dict[str, Any]] = deque(maxlen=self.population_size)
        self.evaluated = 0
        if _init_setup_model:
            self._setup_model()

    def propose(self) -> Genotype:
        """The next episode's genotype: empty (all random) while the first P members are drawn, then a
        one-mutation child of the tournament's winner."""
        if self.evaluated < self.population_size:
            return {}  # a random member: every decision drawn when the env asks for it
        members = list(self.population)
        picks = self.rng.choice(len(members), size=self.sample_size, replace=False)
        parent = max((members[i] for i in picks), key=lambda m: m["reward"])
        child = dict(parent["genotype"])
        mutable = [(key, valid) for key, valid in parent["decisions"] if len(valid) > 1]
        if mutable:
            key, valid = mutable[int(self.rng.integers(len(mutable)))]
            child[key] = int(self.rng.choice([a for a in valid if a != child[key]]))
        return child

    def _episode_end(self, reward: float, info: dict[str, Any]) -> None:
        self.population.append({"genotype": self._genotype, "decisions": self._decisions, "reward": reward})
        self.evaluated += 1
        super()._episode_end(reward, info)
