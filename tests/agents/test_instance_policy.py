import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, PPO

from agents.common.training import build_agent, load_agent, train_agent
from agents.rlkd.policies import InstancePolicy

ENV_ID = "TemperatureKD-v0"
HYPERPARAMS = {"policy": "InstancePolicy", "n_steps": 16, "batch_size": 16, "n_epochs": 1}


@pytest.fixture(scope="module")
def model(tiny_json_kwargs):
    model, _ = build_agent("ppo", ENV_ID, seed=0, env_kwargs=tiny_json_kwargs, hyperparams=HYPERPARAMS)
    return model


def test_yaml_name_builds_the_instance_policy(model):
    assert isinstance(model.policy, InstancePolicy)
    assert model.policy.log_std.shape == (1,)


def test_each_instance_is_acted_on_by_the_same_network(model):
    obs = np.random.default_rng(0).random((32, 3), dtype=np.float32)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (32,)
    # Permuting the instances permutes their actions; an instance's action depends on its row only.
    perm = np.random.default_rng(1).permutation(32)
    np.testing.assert_allclose(model.predict(obs[perm], deterministic=True)[0], action[perm], rtol=1e-6)
    twins = obs.copy()
    twins[5] = twins[9]
    twin_actions, _ = model.predict(twins, deterministic=True)
    assert twin_actions[5] == twin_actions[9]
    np.testing.assert_array_equal(np.delete(twin_actions, 5), np.delete(action, 5))


def test_parameters_do_not_grow_with_the_batch():
    def policy(batch: int) -> InstancePolicy:
        obs = spaces.Box(0, 1, (batch, 3), np.float32)
        return InstancePolicy(obs, spaces.Box(-1, 1, (batch,), np.float32), lambda _: 1e-3, net_arch=[16])

    def count(p: InstancePolicy) -> int:
        return sum(x.numel() for x in p.parameters())

    assert count(policy(8)) == count(policy(512))
    # actor 3->16->1, critic 3->16 -> value 16->1, one log-std
    assert count(policy(8)) == (3 * 16 + 16) + (16 + 1) + (3 * 16 + 16) + (16 + 1) + 1


def test_optimizer_trains_the_shared_head():
    p = InstancePolicy(spaces.Box(0, 1, (4, 3), np.float32), spaces.Box(-1, 1, (4,), np.float32), lambda _: 1e-3)
    optimized = {id(x) for group in p.optimizer.param_groups for x in group["params"]}
    assert {id(x) for x in p.parameters()} == optimized


def test_value_pools_over_instances():
    p = InstancePolicy(spaces.Box(0, 1, (4, 3), np.float32), spaces.Box(-1, 1, (4,), np.float32), lambda _: 1e-3)
    obs = torch.rand(2, 4, 3)
    torch.testing.assert_close(p.predict_values(obs), p.predict_values(obs[:, [2, 0, 3, 1]]))
    assert p.predict_values(obs).shape == (2, 1)


@pytest.mark.parametrize(
    ("obs", "act"),
    [
        (spaces.Box(0, 1, (12,), np.float32), spaces.Box(-1, 1, (12,), np.float32)),
        (spaces.Box(0, 1, (4, 3), np.float32), spaces.Box(-1, 1, (5,), np.float32)),
        (spaces.Box(0, 1, (4, 3), np.float32), spaces.Discrete(4)),
    ],
)
def test_unfit_spaces_are_refused(obs, act):
    with pytest.raises(ValueError, match="InstancePolicy"):
        InstancePolicy(obs, act, lambda _: 1e-3)


def test_sde_is_refused():
    obs, act = spaces.Box(0, 1, (4, 3), np.float32), spaces.Box(-1, 1, (4,), np.float32)
    with pytest.raises(ValueError, match="use_sde"):
        InstancePolicy(obs, act, lambda _: 1e-3, use_sde=True)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_learns_saves_and_loads(tmp_path, tiny_json_kwargs, algo):
    hyperparams = HYPERPARAMS if algo == "ppo" else {"policy": "InstancePolicy", "n_steps": 16}
    trained = train_agent(algo, ENV_ID, 0, tmp_path, 32, tiny_json_kwargs, hyperparams, progress_bar=False,
                          tensorboard=False)  # fmt: skip
    assert isinstance(trained.model, PPO if algo == "ppo" else A2C)
    untrained, _ = build_agent(algo, ENV_ID, seed=0, env_kwargs=tiny_json_kwargs, hyperparams=hyperparams)
    obs = np.random.default_rng(0).random((32, 3), dtype=np.float32)
    action, _ = trained.model.predict(obs, deterministic=True)
    assert not np.array_equal(untrained.predict(obs, deterministic=True)[0], action)
    loaded = load_agent(tmp_path)
    assert isinstance(loaded.model.policy, InstancePolicy)
    np.testing.assert_array_equal(loaded.model.predict(obs, deterministic=True)[0], action)
