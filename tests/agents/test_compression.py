import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.common.compression import SearchRecordCallback, final_evaluation
from agents.common.evaluation import save_entry, search_entry, verify_entry
from agents.common.leaderboard import render
from agents.common.registry import ALGOS, load_hyperparams
from agents.common.training import build_agent, load_agent, train_agent
from agents.common.two_stage import two_stage_search
from agents.search.evolution import AgingEvolution
from agents.search.random_search import RandomSearch

ENV_ID = "N2NCompress-v0"
SEARCH_ALGOS = ("random_search", "evolution", "hill_climbing", "maskable_ppo", "n2n")


@pytest.fixture(scope="module")
def search_dirs(tmp_path_factory, tiny_n2n_kwargs):
    """Two tiny random searches (training seeds 0 and 1) saved by train_agent."""
    root = tmp_path_factory.mktemp("searches")
    dirs = []
    for seed in (0, 1):
        out = root / f"seed_{seed}"
        train_agent("random_search", ENV_ID, seed, out, 40, tiny_n2n_kwargs, progress_bar=False, tensorboard=False)
        dirs.append(out)
    return dirs


@pytest.mark.parametrize("algo", SEARCH_ALGOS)
def test_every_search_algo_has_n2n_settings(algo, tiny_n2n_kwargs):
    params = load_hyperparams(algo, ENV_ID)
    assert params["n_students"] == load_hyperparams("random_search", ENV_ID)["n_students"]  # same budget
    model, _ = build_agent(algo, ENV_ID, seed=0, env_kwargs=tiny_n2n_kwargs)
    assert type(model) is ALGOS[algo]


def test_random_search_acts_only_on_valid_actions_and_is_seeded(tiny_n2n_kwargs):
    env = gym.make(ENV_ID, **tiny_n2n_kwargs)
    obs, _ = env.reset(seed=0)
    a, b = RandomSearch("UniformPolicy", env, seed=3), RandomSearch("UniformPolicy", env, seed=3)
    removal = [int(a.predict(obs)[0]) for _ in range(50)]
    assert set(removal) == {0, 1}
    assert removal == [int(b.predict(obs)[0]) for _ in range(50)]
    obs["action_mask"][:] = [0, 0, 0, 1, 0, 1, 0]
    assert {int(a.predict(obs)[0]) for _ in range(30)} == {3, 5}
    batched = {k: v[None] for k, v in obs.items()}
    assert a.predict(batched)[0].shape == (1,)
    with pytest.raises(ValueError, match="UniformPolicy"):
        RandomSearch("MlpPolicy", env)


def test_search_record_keeps_the_best_valid_student():
    record = SearchRecordCallback()
    base = dict(student_parameters=10, architecture_summary="x", cached=False, train_seconds=0.0, accuracy=0.5)
    record.record(0.4, dict(base, compression=0.5, architecture={"a": 1}, degenerate=""))
    record.record(-1.0, dict(base, compression=1.0, architecture=None, degenerate="nothing left"))
    record.record(0.7, dict(base, compression=0.6, architecture={"a": 2}, degenerate=""))
    record.record(0.6, dict(base, compression=0.7, architecture={"a": 1}, degenerate=""))
    summary = record.summary()
    assert summary["episodes"] == 4 and summary["unique_students"] == 2
    assert summary["best"]["reward"] == 0.7 and summary["best"]["architecture"] == {"a": 2}


def test_train_agent_writes_the_search(search_dirs):
    search = json.loads((search_dirs[0] / "search.json").read_text())
    assert search["episodes"] == len(search["history"]) >= 6
    rewards = [h["reward"] for h in search["history"] if not h["degenerate"]]
    assert search["best"]["reward"] == max(rewards)
    assert load_agent(search_dirs[0]).config["algo"] == "random_search"


def test_maskable_ppo_trains_on_the_env(tmp_path, tiny_n2n_kwargs):
    small = {"n_steps": 20, "batch_size": 20, "n_epochs": 1}
    trained = train_agent("maskable_ppo", ENV_ID, 0, tmp_path, 20, tiny_n2n_kwargs, small, progress_bar=False,
                          tensorboard=False)  # fmt: skip
    assert trained.model.num_timesteps == 20
    assert json.loads((tmp_path / "search.json").read_text())["episodes"] >= 3


def test_final_evaluation_by_hand(tiny_n2n_kwargs):
    env = gym.make(ENV_ID, **tiny_n2n_kwargs)
    env.reset(seed=0)
    for a in [0, 1, 0, 1, 1]:
        *_, info = env.step(np.int64(a))
    results = final_evaluation(ENV_ID, tiny_n2n_kwargs, info["architecture"], seeds=[1000, 1001], epochs=2)
    assert [r["seed"] for r in results] == [1000, 1001]
    for r in results:
        c = 1 - r["student_parameters"] / r["teacher_parameters"]
        assert r["compression"] == pytest.approx(c) == pytest.approx(info["compression"])
        assert r["final_reward"] == pytest.approx(c * (2 - c) * r["student_test_accuracy"] / r["teacher_test_accuracy"])
    again = final_evaluation(ENV_ID, tiny_n2n_kwargs, info["architecture"], seeds=[1000], epochs=2, use_cache=False)
    assert again[0] == results[0]


def test_search_entry_and_verify(tmp_path, search_dirs, fast_bootstrap):
    entry = search_entry(search_dirs, seeds=[1000, 1001], tag="test", directory=tmp_path, epochs=2, progress=False)
    assert entry["agent"]["kind"] == "search" and entry["metric"] == "final_reward"
    assert len(entry["runs"]) == 2 and all(len(run["episodes"]) == 2 for run in entry["runs"])
    best = json.loads((search_dirs[0] / "search.json").read_text())["best"]
    assert entry["runs"][0]["architecture"] == best["architecture"]
    path = save_entry(entry, tmp_path)
    assert verify_entry(path, tmp_path, progress=False) == []
    readme, plots = render(tmp_path)
    assert [p.name for p in plots] == [f"{ENV_ID}.png", f"{ENV_ID}-students.png"]
    assert "Best students found" in readme.read_text() and best["architecture_summary"] in readme.read_text()
    entry["runs"][0]["episodes"][0]["student_test_accuracy"] += 0.01
    path.write_text(json.dumps(entry))
    problems = verify_entry(path, tmp_path, progress=False)
    assert any("student_test_accuracy" in p for p in problems)


def test_n2n_policy_transfer_to_a_deeper_teacher(tmp_path, tiny_n2n_kwargs):
    # Train N2N on the 3-layer tiny teacher, then start a search on a 4-layer one from its weights.
    from kd_envs.tasks import ModelConfig, TaskConfig

    first = train_agent("n2n", ENV_ID, 0, tmp_path / "a", 24, tiny_n2n_kwargs, progress_bar=False, tensorboard=False)
    deeper = TaskConfig.from_dict(tiny_n2n_kwargs["task"])
    deeper = TaskConfig(dataset=deeper.dataset, teacher=ModelConfig("mlp", width=32, depth=4),
                        teacher_training=deeper.teacher_training)  # fmt: skip
    kwargs = dict(tiny_n2n_kwargs, task=deeper.to_dict())
    second = train_agent("n2n", ENV_ID, 1, tmp_path / "b", 12, kwargs, progress_bar=False, tensorboard=False,
                         init_from=tmp_path / "a" / "model.zip")  # fmt: skip
    assert second.config["init_from"].endswith("model.zip")
    assert second.model.num_timesteps == 12
    assert gym.make(ENV_ID, **kwargs).unwrapped.num_layers == 4
    # Before it searches, the transferred policy is exactly the trained one.
    transferred, _ = build_agent("n2n", ENV_ID, 1, kwargs, init_from=tmp_path / "a" / "model.zip")
    for p, q in zip(transferred.policy.parameters(), first.model.policy.parameters(), strict=True):
        assert torch.equal(p, q)
    assert json.loads((tmp_path / "b" / "search.json").read_text())["episodes"] >= 1


@pytest.mark.parametrize("algo", SEARCH_ALGOS)
def test_the_budget_in_students_is_the_same_for_every_searcher(tmp_path, tiny_n2n_kwargs, algo):
    small_ppo = {"n_steps": 20, "batch_size": 20, "n_epochs": 1} if algo == "maskable_ppo" else {}
    hyperparams = {"n_students": 7, **small_ppo}
    trained = train_agent(algo, ENV_ID, 0, tmp_path, env_kwargs=tiny_n2n_kwargs, hyperparams=hyperparams,
                          progress_bar=False, tensorboard=False)  # fmt: skip
    assert json.loads((tmp_path / "search.json").read_text())["episodes"] == 7
    assert trained.config["hyperparams"]["n_students"] == 7


def run_evolution(kwargs, seed, episodes, population_size=4, sample_size=4):
    model = AgingEvolution("EvolutionPolicy", gym.make(ENV_ID, **kwargs), seed=seed, population_size=population_size,
                           sample_size=sample_size)  # fmt: skip
    record = SearchRecordCallback()
    from stable_baselines3.common.callbacks import StopTrainingOnMaxEpisodes

    model.learn(10_000, callback=[record, StopTrainingOnMaxEpisodes(episodes)])
    return model, record


def test_aging_evolution_mutates_the_tournament_winner_once_and_the_oldest_dies(tiny_n2n_kwargs):
    model, record = run_evolution(tiny_n2n_kwargs, seed=0, episodes=12)
    assert model.evaluated == 12
    # Aging: the population is the last P students evaluated, in order.
    assert [m["reward"] for m in model.population] == [h["reward"] for h in record.history[-4:]]
    # With S = P the tournament is the whole population: the child is one mutation of its best member.
    parent = max(model.population, key=lambda m: m["reward"])
    child = model.propose()
    changed = [key for key in child if child[key] != parent["genotype"].get(key)]
    assert len(changed) == 1
    valid = dict(parent["decisions"])[changed[0]]
    assert len(valid) > 1 and child[changed[0]] in valid
    # Before the population is full, every member is random.
    fresh = AgingEvolution("EvolutionPolicy", gym.make(ENV_ID, **tiny_n2n_kwargs), seed=0, population_size=4,
                           sample_size=2)  # fmt: skip
    assert fresh.propose() == {}


def test_aging_evolution_is_seeded_and_checks_its_settings(tiny_n2n_kwargs):
    runs = [run_evolution(tiny_n2n_kwargs, seed=s, episodes=10)[1].history for s in (3, 3, 4)]
    summaries = [[h["architecture_summary"] for h in run] for run in runs]
    assert summaries[0] == summaries[1] != summaries[2]
    env = gym.make(ENV_ID, **tiny_n2n_kwargs)
    with pytest.raises(ValueError, match="sample_size=5 exceeds population_size=4"):
        AgingEvolution("EvolutionPolicy", env, population_size=4, sample_size=5)
    with pytest.raises(ValueError, match="population_size=0"):
        AgingEvolution("EvolutionPolicy", env, population_size=0)


def test_two_stage_search_shrinks_the_best_removal(tmp_path, tiny_n2n_kwargs):
    summary = two_stage_search("random_search", 1, tmp_path, 10, tiny_n2n_kwargs)
    stage1 = json.loads((tmp_path / "stage1" / "search.json").read_text())
    parent = stage1["best"]["removed_layers"]
    stage2_config = json.loads((tmp_path / "stage2" / "config.json").read_text())
    assert stage2_config["env_kwargs"]["stages"] == "shrink" and stage2_config["env_kwargs"]["removed_layers"] == parent
    assert summary["episodes"] == 10 and [h["stage"] for h in summary["history"]] == ["removal"] * 5 + ["shrink"] * 5
    assert all(h["removed_layers"] == parent for h in summary["history"][5:])
    # Stage 1 keeps full widths (lin32); the best of either stage is the run's best.
    assert all(set(h["architecture_summary"].split()) <= {"lin32", "(no"} | {"layers)"} for h in summary["history"][:5])
    assert summary["best"]["reward"] == max(h["reward"] for h in summary["history"] if not h["degenerate"])
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["env_kwargs"] == tiny_n2n_kwargs and config["protocol"]["parent_removed_layers"] == parent
    assert (tmp_path / "model.zip").is_file()


@pytest.mark.parametrize("stem", ["N2N-study", "N2N-study-budget"])
def test_the_committed_study_tables_are_what_the_report_makes_of_their_numbers(stem):
    """leaderboard/<stem>.md is study_table of the committed <stem>.json, and each of its tables is whole: a
    header, then rows with the header's columns (the budget table once sat inside the first one)."""
    from agents.common.leaderboard import LEADERBOARD_DIR
    from agents.common.reports.n2n import study_table

    study = json.loads((LEADERBOARD_DIR / f"{stem}.json").read_text())
    text = study_table(study) + "\n"
    assert (LEADERBOARD_DIR / f"{stem}.md").read_text() == text
    tables = [block.splitlines() for block in text.split("\n\n") if block.startswith("|")]
    assert tables and all(len(t) >= 3 for t in tables)
    for table in tables:
        columns = table[0].count("|")
        assert set(table[1].replace("|", "")) == {"-"} and table[1].count("|") == columns
        assert all(row.startswith("|") and row.count("|") == columns for row in table[2:]), table
