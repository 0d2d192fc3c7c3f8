"""Acting zips (agents.common.training.save_acting_weights): smaller, loaded by every algorithm's own
load, and predict() gives the same actions."""

import shutil

import numpy as np
import pytest
import torch

from agents.common.training import COPY_SUFFIXES, acting_zip, load_agent, train_agent

OFF_POLICY = {"buffer_size": 64, "learning_starts": 8, "batch_size": 8, "train_freq": 4, "gradient_steps": 1,
              "policy_kwargs": {"net_arch": [16]}}  # fmt: skip
ON_POLICY = {"n_steps": 16, "batch_size": 16, "n_epochs": 1}
# algo -> (env id, which tiny env kwargs, hyperparameter overrides, steps)
RUNS = {
    "dqn": ("CartPole-v1", None, OFF_POLICY, 32),
    "qrdqn": ("CartPole-v1", None, OFF_POLICY, 32),
    "iq": ("CartPole-v1", None, {**OFF_POLICY, "cluster_warmup": 16, "anchor_update_interval": 8}, 32),
    "ppo": ("TemperatureKD-v0", "tiny_json_kwargs", ON_POLICY, 16),
    "rlkd": ("TemperatureKD-v0", "tiny_json_kwargs", {**ON_POLICY, "policy_kwargs": {"net_arch": [8]}}, 16),
    "maskable_ppo": ("N2NCompress-v0", "tiny_n2n_kwargs", ON_POLICY, 16),
    "n2n": ("N2NCompress-v0", "tiny_n2n_kwargs", {"rollouts_per_update": 2}, 16),
    "random_search": ("N2NCompress-v0", "tiny_n2n_kwargs", {}, 8),
    "evolution": ("N2NCompress-v0", "tiny_n2n_kwargs", {"population_size": 2, "sample_size": 1}, 16),
}


def observation_batch(space, n: int = 16):
    space.seed(0)
    samples = [space.sample() for _ in range(n)]
    if isinstance(samples[0], dict):
        return {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    return np.stack(samples)


@pytest.mark.parametrize("algo", sorted(RUNS))
def test_acting_zip_loads_and_acts_the_same(algo, tmp_path, request):
    env_id, kwargs_fixture, hyperparams, steps = RUNS[algo]
    env_kwargs = request.getfixturevalue(kwargs_fixture) if kwargs_fixture else None
    full, acting = tmp_path / "full", tmp_path / "acting"
    train_agent(algo, env_id, 0, full, steps, env_kwargs, hyperparams, progress_bar=False, tensorboard=False)
    acting.mkdir()
    shutil.copy(full / "config.json", acting / "config.json")
    acting_zip(full / "model.zip", acting / "model.zip")
    assert (acting / "model.zip").stat().st_size < (full / "model.zip").stat().st_size
    a, b = load_agent(full).model, load_agent(acting).model
    obs = observation_batch(a.observation_space)
    np.testing.assert_array_equal(a.predict(obs, deterministic=True)[0], b.predict(obs, deterministic=True)[0])
    # Every network predict() reads is exact; the copies equal their online network.
    full_state, acting_state = a.policy.state_dict(), b.policy.state_dict()
    assert list(full_state) == list(acting_state)
    for key, value in full_state.items():
        if not any(suffix + "." in key for suffix in COPY_SUFFIXES):
            assert torch.equal(value, acting_state[key]), key
    optimizers = [o for o in vars(b).values() if isinstance(o, torch.optim.Optimizer)]
    optimizers += [getattr(b.policy, "optimizer", None)] if getattr(b.policy, "optimizer", None) else []
    assert all(o.state_dict()["state"] == {} for o in optimizers)
    if algo in ("dqn", "qrdqn", "iq", "ppo", "rlkd", "maskable_ppo", "n2n"):
        assert any(o.state_dict()["param_groups"] for o in optimizers)
