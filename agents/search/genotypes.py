"""Searchers of N2NCompress-v0 that play a chosen genotype rather than a policy: the base of aging evolution and
hill climbing."""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.search.random_search import RandomSearch

# A genotype: the env's decisions keyed by (stage, teacher layer); decisions: the (key, valid actions) of
# every step of an episode, in order.
Genotype = dict[tuple[int, int], int]
Decisions = list[tuple[tuple[int, int], list[int]]]


class GenotypeSearch(RandomSearch):
    """A search that plays one genotype per episode: keep/remove for every teacher layer and a shrink
    factor index for every layer kept, keyed by (stage, layer). Before each episode :meth:`propose` gives
    the genotype to play (an empty one: every decision drawn uniformly from the valid ones, as
    :class:`RandomSearch`); a decision the genotype lacks, or one the step's ``action_mask`` forbids, is
    drawn uniformly from the valid actions and kept in the genotype. After the episode
    :meth:`_episode_end` gets its reward with ``self._genotype`` (as played) and ``self._decisions`` (each
    step's key and valid actions), from which :meth:`neighbours` lists the one-decision changes.
    ``predict`` outside ``learn`` draws uniformly, as :class:`RandomSearch`'s."""

    _genotype: Genotype | None
    _decisions: Decisions

    def _setup_model(self) -> None:
        super()._setup_model()
        self._genotype, self._decisions = None, []

    def _excluded_save_params(self) -> list[str]:
        # The running episode's genotype: learn() starts a new one (and SB3's JSON cannot key by tuples).
        return [*super()._excluded_save_params(), "_genotype", "_decisions"]

    def learn(self, total_timesteps: int, *args, **kwargs):
        self._genotype, self._decisions = None, []  # learn() resets the env: no episode is running
        return super().learn(total_timesteps, *args, **kwargs)

    def _act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self._genotype is None:
            self._genotype = self.propose()
        stage = int(np.argmax(obs["stage"][0]))
        layer = int(np.argmax(obs["position"][0]))
        valid = [int(a) for a in np.flatnonzero(np.asarray(obs["action_mask"][0]) > 0.5)]
        key = (stage, layer)
        if self._genotype.get(key) not in valid:
            self._genotype[key] = int(self.rng.choice(valid))
        self._decisions.append((key, valid))
        return np.array([self._genotype[key]], dtype=np.int64)

    def propose(self) -> Genotype:
        """The next episode's genotype (the base class: an empty one, every decision drawn)."""
        return {}

    @staticmethod
    def neighbours(genotype: Genotype, decisions: Decisions) -> list[tuple[tuple[int, int], int]]:
        """Every one-decision change of an episode: (key, another valid action of that step), in the order
        of the episode's steps and of the actions."""
        return [(key, a) for key, valid in decisions for a in valid if a != genotype[key]]

    def _episode_end(self, reward: float, info: dict[str, Any]) -> None:
        self._genotype, self._decisions = None, []
