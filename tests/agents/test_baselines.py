import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from stable_baselines3.common.noise import NormalActionNoise
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.common.registry import ALGOS, HYPERPARAMS_DIR, load_hyperparams
from agents.common.training import build_agent, load_agent, train_agent
from agents.rlkd.policies import InstancePolicy

ENV_ID = "TemperatureKD-v0"
# The algorithms with settings for TemperatureKD-v0 (search algorithms have N2NCompress-v0's only).
YAML_ALGOS = sorted(
    path.stem for path in HYPERPARAMS_DIR.glob("*.yml") if ENV_ID in (yaml.safe_load(path.read_text()) or {})
)
# Small enough to learn 16 steps in a blink; off-policy algorithms update once, at step 16.
TINY = {
    "ppo": {"n_steps": 16, "batch_size": 16, "n_epochs": 1},
    "a2c": {"n_steps": 16},
    "rlkd": {"n_steps": 16, "batch_size": 16, "n_epochs": 1},
    **{algo: {"buffer_size": 64, "learning_starts": 8, "batch_size": 8} for algo in ("sac", "td3", "tqc")},
}


def test_every_algorithm_has_hyperparameters():
    assert {"a2c", "ppo", "sac", "td3", "tqc"} <= set(YAML_ALGOS) <= set(ALGOS)


@pytest.mark.parametrize("algo", YAML_ALGOS)
def test_yaml_builds_an_agent(algo, tiny_json_kwargs):
    params = load_hyperparams(algo, ENV_ID)
    expected_policy = {"rlkd": "RLKDPolicy", "ppo": "agents.rlkd.policies.InstancePolicy"}.get(algo, "MlpPolicy")
    assert params["n_timesteps"] > 0 and params["policy"] == expected_policy
    model, resolved = build_agent(algo, ENV_ID, seed=0, env_kwargs=tiny_json_kwargs, hyperparams=TINY.get(algo))
    assert type(model) is ALGOS[algo]
    assert resolved == {**params, **TINY.get(algo, {})}
    assert model.seed == 0 and model.n_envs == params.get("n_envs", 1)
    assert model.learning_rate == params["learning_rate"] and model.gamma == params["gamma"]
    assert model.policy_kwargs["net_arch"] == params["policy_kwargs"]["net_arch"]
    assert model.observation_space.shape == (32, 3) and model.action_space.shape == (32,)
    if params.get("noise_type"):
        assert isinstance(model.action_noise, NormalActionNoise)
        draws = np.stack([model.action_noise() for _ in range(4000)])  # its public behaviour: the draws' spread
        np.testing.assert_allclose(draws.std(axis=0), params["noise_std"], rtol=0.1)


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_tiny_learn(algo, tiny_json_kwargs):
    model, _ = build_agent(algo, ENV_ID, seed=0, env_kwargs=tiny_json_kwargs, hyperparams=TINY[algo])
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(total_timesteps=16)
    assert model.num_timesteps == 16
    after = model.policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # at least one update changed the weights


def test_unknown_algo_and_env_id(tiny_json_kwargs):
    with pytest.raises(ValueError, match="algo='c51'.*ppo"):
        build_agent("c51", ENV_ID, seed=0, env_kwargs=tiny_json_kwargs)
    with pytest.raises(KeyError, match=f"CartPole-v1.*{ENV_ID}"):
        build_agent("ppo", "CartPole-v1", seed=0)
    # DDPG is an algorithm SB3 has but no hyperparameter file does.
    with pytest.raises(FileNotFoundError, match="ddpg"):
        load_hyperparams("ddpg", ENV_ID)


@pytest.mark.parametrize("policy", ["agents.rlkd.policies.InstancePolicy", "InstancePolicy"])
def test_a_policy_by_dotted_path_or_by_the_bare_name_of_older_configs(policy, tiny_json_kwargs):
    hyperparams = {"policy": policy, "n_steps": 16, "batch_size": 16, "n_epochs": 1}
    model, _ = build_agent("ppo", ENV_ID, 0, tiny_json_kwargs, hyperparams)
    assert type(model.policy) is InstancePolicy


def test_a_dotted_policy_that_does_not_import_is_refused_by_name(tmp_path):
    (tmp_path / "ppo.yml").write_text(yaml.safe_dump({ENV_ID: {"n_timesteps": 10, "policy": "agents.rlkd.Nope"}}))
    with pytest.raises(ValueError, match="policy='agents.rlkd.Nope'"):
        load_hyperparams("ppo", ENV_ID, directory=tmp_path)


@pytest.mark.slow  # rl-zoo3's start and 320 tiny steps: about 8 s on two cores
def test_rl_zoo3_trains_from_our_yaml_unchanged(tmp_path, tiny_kwargs):
    """rl-zoo3 reads agents/hyperparams/ppo.yml as it is (the policy a dotted path it imports); only the
    budget, the rollout and the env's size are overridden on its command line."""
    root = Path(__file__).resolve().parents[2]
    env_kwargs = [f"{key}:{value!r}" for key, value in {**tiny_kwargs, "task": tiny_kwargs["task"].to_dict()}.items()]
    command = [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", ENV_ID, "--gym-packages", "kd_envs",
               "--conf-file", str(HYPERPARAMS_DIR / "ppo.yml"), "-n", "320", "--seed", "0", "--num-threads", "1",
               "--eval-freq", "-1", "--verbose", "0", "-f", str(tmp_path / "logs"),
               "--hyperparams", "n_steps:16", "batch_size:16", "n_epochs:1", "--env-kwargs", *env_kwargs]  # fmt: skip
    path = os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == 0, done.stderr[-3000:]
    (saved,) = (tmp_path / "logs" / "ppo").glob(f"{ENV_ID}_*/{ENV_ID}.zip")
    model = ALGOS["ppo"].load(saved, device="cpu")
    assert type(model.policy) is InstancePolicy and model.num_timesteps == 320


def test_unsupported_settings_are_refused(tmp_path, tiny_json_kwargs):
    (tmp_path / "ppo.yml").write_text(yaml.safe_dump({ENV_ID: {"n_timesteps": 10, "normalize": True}}))
    with pytest.raises(ValueError, match="normalize"):
        load_hyperparams("ppo", ENV_ID, directory=tmp_path)
    with pytest.raises(ValueError, match="noise_type='ornstein-uhlenbeck'"):
        build_agent("td3", ENV_ID, 0, tiny_json_kwargs, hyperparams={"noise_type": "ornstein-uhlenbeck"})


def test_train_save_and_load(tmp_path, tiny_json_kwargs, tiny_ppo_hyperparams):
    trained = train_agent("ppo", ENV_ID, 3, tmp_path / "run", 32, tiny_json_kwargs, tiny_ppo_hyperparams,
                          progress_bar=False)  # fmt: skip
    assert (tmp_path / "run" / "model.zip").is_file()
    (tb_run,) = (tmp_path / "run" / "tb").iterdir()
    events = EventAccumulator(str(tb_run))
    events.Reload()
    # The episodes' final infos reach TensorBoard beside SB3's own scalars.
    assert {"episode/student_test_accuracy", "episode/temperature_mean", "train/loss"} <= set(events.Tags()["scalars"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config == trained.config
    assert config["env_id"] == ENV_ID and config["algo"] == "ppo" and config["seed"] == 3
    assert config["env_kwargs"] == tiny_json_kwargs and config["total_timesteps"] == 32
    assert config["hyperparams"] == {**load_hyperparams("ppo", ENV_ID), **tiny_ppo_hyperparams}
    assert {"python", "torch", "stable-baselines3", "gymnasium"} <= set(config["packages"])
    assert trained.model.num_timesteps == 32

    loaded = load_agent(tmp_path / "run")
    assert loaded.config == config
    trained_state, loaded_state = trained.model.policy.state_dict(), loaded.model.policy.state_dict()
    assert trained_state.keys() == loaded_state.keys()
    for key in trained_state:
        torch.testing.assert_close(loaded_state[key], trained_state[key], rtol=0, atol=0)
    obs = np.random.default_rng(0).random((32, 3), dtype=np.float32)
    action, _ = trained.model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(loaded.model.predict(obs, deterministic=True)[0], action)
    # The agent learned something: an untrained one with the same seed acts differently.
    untrained, _ = build_agent("ppo", ENV_ID, 3, tiny_json_kwargs, tiny_ppo_hyperparams)
    assert not np.array_equal(untrained.predict(obs, deterministic=True)[0], action)
