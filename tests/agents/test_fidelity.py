"""Proxy fidelity by hand on small arrays, the sampling across compression levels, and a tiny measurement."""

import json

import gymnasium as gym
import numpy as np
import pytest

from agents.common.fidelity import (
    measure_fidelity,
    proxy_fidelity,
    random_student_codes,
    students_across_compression,
    top_k_precision,
)
from kd_envs.envs.n2n_compress import compression_reward


def test_fidelity_by_hand():
    # Two proxy seeds that swap the last two students; their mean ties them at 3.5.
    result = proxy_fidelity([[1, 2, 3, 4], [1, 2, 4, 3]], [10, 20, 30, 40], top=2)
    # tau-b: 5 concordant pairs, none discordant, one tied in the proxy: 5 / sqrt((6 - 1) * 6).
    assert result["kendall_tau"] == pytest.approx(5 / np.sqrt(30))
    # Spearman: ranks (1, 2, 3.5, 3.5) against (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5).
    assert result["spearman_rho"] == pytest.approx(4.5 / np.sqrt(22.5))
    assert result["top_precision"] == 1.0 and result["top"] == 2  # {2, 3} both ways
    # Seed against seed: 5 concordant, 1 discordant of 6 pairs; rho = 1 - 6 * 2 / (4 * 15).
    assert result["seed_kendall_tau"] == pytest.approx(4 / 6)
    assert result["seed_spearman_rho"] == pytest.approx(0.8)
    assert result["students"] == 4 and result["proxy_seeds"] == 2


def test_fidelity_of_a_reversed_ranking_and_one_seed():
    result = proxy_fidelity([4, 3, 2, 1], [[1, 2, 3, 4], [1, 2, 3, 5]], top=2)
    assert result["kendall_tau"] == pytest.approx(-1.0) and result["spearman_rho"] == pytest.approx(-1.0)
    assert result["top_precision"] == 0.0
    assert result["seed_kendall_tau"] is None and result["seed_spearman_rho"] is None
    assert top_k_precision(np.array([3.5, 3.5, 1]), np.array([0, 1, 2]), 1) == 0.0  # ties go to the first index
    assert top_k_precision(np.array([1, 2, 3]), np.array([1, 3, 2]), 10) == 1.0  # k capped at the students
    with pytest.raises(ValueError, match="proxy scores 3 students, final 2"):
        proxy_fidelity([1, 2, 3], [1, 2])


def test_students_across_compression():
    rng = np.random.default_rng(0)
    compressions = [0.05, 0.06, 0.07, 0.5, 0.95, 0.96]
    chosen = students_across_compression(compressions, 4, 2, rng)
    assert len(chosen) == 4 and sum(i < 3 for i in chosen) == 2  # two from each half
    assert students_across_compression(compressions, 10, 2, rng) == list(range(6))
    # A bin short of its share: the other gives the rest.
    assert students_across_compression([0.1] * 5 + [0.9], 4, 2, rng)[-1] == 5
    # A remainder smaller than the bins: one each to bins drawn at random, never more than asked.
    chosen = students_across_compression(np.linspace(0, 0.99, 40), 7, 4, rng)
    assert len(chosen) == 7 and sorted(np.bincount(np.array(chosen) // 10, minlength=4)) == [1, 2, 2, 2]


def test_measure_fidelity_on_the_tiny_task(tiny_n2n_kwargs, tmp_path):
    kwargs = {**tiny_n2n_kwargs, "shrink_factors": (0.5, 1.0)}
    env = gym.make("N2NCompress-v0", **kwargs)
    codes = random_student_codes(env, 4, np.random.default_rng(0))
    assert len(set(codes)) == 4 and all(len(c) == 3 and c != "---" and c != "111" for c in codes)
    records = tmp_path / "records.jsonl"
    report = measure_fidelity(kwargs, codes, records, (0, 1), (1000,), final_epochs=2, top=2, progress=False)
    lines = records.read_text().splitlines()
    assert len(lines) == 4 * 3
    by_key = {(r["kind"], r["code"], r["seed"]): r for r in map(json.loads, lines)}
    proxy = [[by_key[("proxy", c, s)]["val_accuracy"] for c in codes] for s in (0, 1)]
    final = [by_key[("final", c, 1000)]["test_accuracy"] for c in codes]
    assert report["accuracy"] == proxy_fidelity(proxy, final, top=2)
    n2n = env.unwrapped
    c = report["compression"][0]
    assert c == pytest.approx(1 - by_key[("proxy", codes[0], 0)]["parameters"] / n2n.teacher_parameters)
    rewards = [[compression_reward(cc, a, n2n.teacher_accuracy) for cc, a in zip(report["compression"], row)]
               for row in proxy]  # fmt: skip
    finals = [compression_reward(cc, a, n2n.task.teacher_test_accuracy) for cc, a in zip(report["compression"], final)]
    assert report["n2n_reward"] == proxy_fidelity(rewards, finals, top=2)
    # A rerun trains nothing and gives the same report; a torn line is measured again.
    with records.open("a") as f:
        f.write('{"kind": "fin')
    assert measure_fidelity(kwargs, codes, records, (0, 1), (1000,), final_epochs=2, top=2, progress=False) == report
    assert len(records.read_text().splitlines()) == 4 * 3 + 1
