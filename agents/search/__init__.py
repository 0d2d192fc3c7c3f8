"""Searchers of N2NCompress-v0 that learn no policy network: random search, aging evolution and hill climbing, each an
SB3 ``BaseAlgorithm``; the N2N paper's two-stage protocol, which runs any searcher, is ``agents.common.two_stage``."""

from agents.search.evolution import AgingEvolution
from agents.search.hill_climbing import HillClimbing
from agents.search.policies import UniformPolicy
from agents.search.random_search import RandomSearch

__all__ = ["RandomSearch", "AgingEvolution", "HillClimbing", "UniformPolicy"]
