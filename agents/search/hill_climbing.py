"""Hill climbing (local search) on N2NCompress-v0: from a random student, move to the best one-decision
neighbour while one improves, else restart from a random student."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from stable_baselines3.common.type_aliases import GymEnv

import kd_envs  # noqa: F401  (registers the environments)
from agents.search.genotypes import Genotype, GenotypeSearch
from agents.search.policies import UniformPolicy


class HillClimbing(GenotypeSearch):
    """Local search with restarts, the simple searcher that White, Nolen and Savani ("Exploring the Loss
    Landscape in Neural Architecture Search", UAI 2021, Algorithm 1) found as strong as the best NAS methods
    on NAS-Bench-201, on N2NCompress-v0's genotypes (see :class:`~agents.search.genotypes.GenotypeSearch`).

    The first student is random. Then every one-decision neighbour of the current student is played (one
    decision of its episode changed to another valid action: a layer removed or restored, or a kept layer's
    shrink factor changed), in an order drawn at random; when all of them are scored, the search moves to
    the best if its reward beats the current student's, else it is at a local optimum and restarts from a
    random student. ``first_improvement=True`` moves to the first neighbour that beats the current student
    instead of scoring them all (fewer students per move, a less steep path).

    A restored layer takes the shrink factor the current genotype still holds for it, else a random one (as
    in :class:`~agents.search.evolution.AgingEvolution`); a neighbour the env's masks forbid at some step is
    played with a random valid decision there. With a fixed training seed a student's reward is a function of
    the student, so a repeated one is free (the env's cache, or a table).

    :param policy: ``"HillClimbingPolicy"`` (the uniform policy that fills the decisions a genotype lacks).
    :param first_improvement: move at the first improving neighbour rather than the best of all.
    Other parameters: see :class:`~agents.search.random_search.RandomSearch`.
    """

    policy_aliases: ClassVar[dict[str, type[UniformPolicy]]] = {"HillClimbingPolicy": UniformPolicy}

    def __init__(
        self,
        policy: str | type[UniformPolicy],
        env: GymEnv | None,
        seed: int | None = None,
        first_improvement: bool = False,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        device: str | torch.device = "cpu",
        _init_setup_model: bool = True,
    ):
        if not isinstance(first_improvement, bool):
            raise ValueError(f"HillClimbing: first_improvement={first_improvement!r}; expected True or False")
        super().__init__(policy, env, seed, tensorboard_log, verbose, device, _init_setup_model=False)
        self.first_improvement = first_improvement
        # The current student ({"genotype", "decisions", "reward"}), the neighbours of it still to play, the
        # best neighbour played so far; the number of moves and restarts.
        self.current: dict[str, Any] | None = None
        self.pending: list[tuple[tuple[int, int], int]] = []
        self.best_neighbour: dict[str, Any] | None = None
        self.moves = self.restarts = 0
        if _init_setup_model:
            self._setup_model()

    def _excluded_save_params(self) -> list[str]:
        # Genotypes are keyed by tuples, which SB3's JSON cannot hold: a loaded searcher starts a new climb.
        return [*super()._excluded_save_params(), "current", "pending", "best_neighbour"]

    def _setup_model(self) -> None:
        super()._setup_model()
        self.current, self.pending, self.best_neighbour = None, [], None

    def propose(self) -> Genotype:
        """A random student (an empty genotype) to start or restart, else the next neighbour to play."""
        if self.current is None or not self.pending:
            return {}
        key, action = self.pending.pop(0)
        return {**self.current["genotype"], key: action}

    def _climb_from(self, member: dict[str, Any] | None) -> None:
        self.current, self.best_neighbour = member, None
        if member is None:
            self.pending = []
            return
        pending = self.neighbours(member["genotype"], member["decisions"])
        self.pending = [pending[i] for i in self.rng.permutation(len(pending))]

    def _episode_end(self, reward: float, info: dict[str, Any]) -> None:
        member = {"genotype": self._genotype, "decisions": self._decisions, "reward": reward}
        if self.current is None:  # a start or a restart
            self._climb_from(member)
        else:
            if self.best_neighbour is None or reward > self.best_neighbour["reward"]:
                self.best_neighbour = member
            improved = self.best_neighbour["reward"] > self.current["reward"]
            if improved and (self.first_improvement or not self.pending):
                self.moves += 1
                self._climb_from(self.best_neighbour)
            elif not self.pending:  # a local optimum: restart
                self.restarts += 1
                self._climb_from(None)
        super()._episode_end(reward, info)
