"""RLKD: calibration by hand, per-instance PPO samples, the shared actor, learning, save/load, training path."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from agents.common.training import load_agent, train_agent
from agents.rlkd.buffers import InstanceRolloutBuffer
from agents.rlkd.calibration import calibrate, instance_advantages, reward_corrector_loss, state_updater_loss
from agents.rlkd.policies import RLKDPolicy
from agents.rlkd.rlkd import RLKD


class InstanceCreditEnv(gym.Env):
    """B instances with random states; each instance's best action is 0.8·(2·s_0 − 1) and the batch's
    reward is minus the mean squared miss: only per-instance credit tells the instances apart."""

    def __init__(self, batch_size: int = 16, horizon: int = 8):
        self.observation_space = spaces.Box(0.0, 1.0, (batch_size, 3), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (batch_size,), np.float32)
        self.horizon = horizon

    def _draw(self):
        self._obs = self.np_random.random(self.observation_space.shape, dtype=np.float32)
        return self._obs

    def target(self, obs: np.ndarray) -> np.ndarray:
        return 0.8 * (2 * obs[..., 0] - 1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._draw(), {}

    def step(self, action):
        reward = -float(np.mean((np.clip(action, -1, 1) - self.target(self._obs)) ** 2))
        self._t += 1
        return self._draw(), reward, self._t == self.horizon, False, {}


def small_rlkd(env, seed=0, **kwargs) -> RLKD:
    params = dict(n_steps=64, batch_size=16, n_epochs=5, learning_rate=3e-3, gamma=0.5, reward_scale=10.0,
                  policy_kwargs=dict(net_arch=[32, 32], log_std_init=-1.0))  # fmt: skip
    params.update(kwargs)
    return RLKD("RLKDPolicy", env, seed=seed, **params)


def credit_env(seed=0):
    return make_vec_env(InstanceCreditEnv, n_envs=1, seed=seed)


# -- calibration and advantages by hand --------------------------------------------------------------
def test_calibrate_spreads_the_residual_evenly_and_sums_to_the_batch_reward():
    predicted = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    rewards = torch.tensor([9.0, 3.0])
    calibrated = calibrate(predicted, rewards)
    torch.testing.assert_close(calibrated, torch.tensor([[2.0, 3.0, 4.0], [1.0, 1.0, 1.0]]))
    torch.testing.assert_close(calibrated.sum(-1), rewards)


def test_reward_corrector_loss_by_hand():
    predicted, rewards = torch.tensor([[1.0, 2.0]]), torch.tensor([4.0])
    # alpha·(3 − 4)² + beta/2·((1 − 2)² + (2 − 2)²) = 1 + 0.25
    assert reward_corrector_loss(predicted, rewards, alpha=1.0, beta=0.5).item() == pytest.approx(1.25)
    assert reward_corrector_loss(predicted, rewards, alpha=0.0, beta=1.0).item() == pytest.approx(0.5)


def test_state_updater_loss_by_hand():
    loss = state_updater_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 3.0]), torch.full((2, 4, 3), 0.5), 0.1)
    assert loss.item() == pytest.approx(0.5 + 0.05)


def test_instance_advantages_by_hand():
    # T=2 steps, one env, B=2 instances; gamma 0.5, lambda 1; the episode does not end.
    rewards = np.array([[2.0], [4.0]])
    shares = np.array([[[0.5, 1.5]], [[2.0, 2.0]]])
    values = np.array([[[1.0, 3.0]], [[2.0, 2.0]]])
    last_values, last_dones = np.array([[4.0, 0.0]]), np.array([0.0])
    advantages, returns = instance_advantages(rewards, shares, values, np.zeros((2, 1)), last_values, last_dones,
                                              gamma=0.5, gae_lambda=1.0)  # fmt: skip
    # Batch: V̄ = (2, 2), last V̄ = 2; Ā_1 = 4 + 0.5·2 − 2 = 3; Ā_0 = 2 + 0.5·2 − 2 + 0.5·3 = 2.5.
    # Instances: Ā + (2·r_i − R) − (V_i − V̄).
    expected = np.array([[[2.5 + (1 - 2) - (1 - 2), 2.5 + (3 - 2) - (3 - 2)]], [[3.0, 3.0]]])
    np.testing.assert_allclose(advantages, expected)
    np.testing.assert_allclose(returns, expected + values)


def test_equal_shares_give_sb3s_gae_on_the_batch_mean():
    rng = np.random.default_rng(0)
    obs_space = spaces.Box(0.0, 1.0, (4, 3), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
    ours = InstanceRolloutBuffer(6, obs_space, act_space, gamma=0.9, gae_lambda=0.8, reward_scale=2.0)
    sb3 = RolloutBuffer(6, obs_space, act_space, gamma=0.9, gae_lambda=0.8)
    for t in range(6):
        obs, act = rng.random((1, 4, 3)), rng.random((1, 4))
        reward, start = rng.random(1), np.array([float(t == 3)])
        values = torch.as_tensor(rng.random((1, 4)), dtype=torch.float32)
        ours.add(obs, act, reward, start, values, torch.zeros(1, 4))
        sb3.add(obs, act, reward * 2.0, start, values.mean(-1), torch.zeros(1))
    last = torch.as_tensor(rng.random((1, 4)), dtype=torch.float32)
    ours.compute_returns_and_advantage(last, np.array([False]))
    sb3.compute_returns_and_advantage(last.mean(-1), np.array([False]))
    np.testing.assert_allclose(ours.advantages.mean(-1), sb3.advantages, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.instance_rewards.sum(-1), sb3.rewards, rtol=1e-5)
    with pytest.raises(ValueError, match="sum to each batch's reward"):
        ours.set_instance_rewards(np.zeros((6, 1, 4)))


# -- the policy ---------------------------------------------------------------------------------------
def test_actor_is_shared_by_instances():
    model = small_rlkd(credit_env())
    obs = np.random.default_rng(1).random((1, 16, 3), dtype=np.float32)
    actions, _ = model.predict(obs, deterministic=True)
    perm = np.random.default_rng(2).permutation(16)
    permuted, _ = model.predict(obs[:, perm], deterministic=True)
    np.testing.assert_allclose(permuted, actions[:, perm], rtol=1e-5, atol=1e-6)
    # An instance's action does not depend on the rest of its batch.
    other = obs.copy()
    other[:, 1:] = 0.5
    alone, _ = model.predict(other, deterministic=True)
    assert alone[0, 0] == pytest.approx(actions[0, 0], abs=1e-6)
    values = model.policy.predict_values(torch.as_tensor(obs))
    assert values.shape == (1, 16)


def test_rollout_log_probs_match_the_first_ppo_evaluation():
    """U changes only after PPO's update, so PPO's first ratio is exactly 1 on every instance."""

    class FirstEvaluation(BaseCallback):
        """At the end of a rollout (before PPO's update): the policy's log-probabilities of its actions."""

        results: list = []

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            buffer = self.model.rollout_buffer
            with torch.no_grad():
                _, log_prob, entropy = self.model.policy.evaluate_actions(
                    torch.as_tensor(buffer.observations[:, 0]), torch.as_tensor(buffer.actions[:, 0]))
            self.results.append((log_prob.numpy(), buffer.log_probs.reshape(-1).copy(), entropy.shape))

    model = small_rlkd(credit_env())
    model.learn(128)  # two rollouts: U has been fitted once
    callback = FirstEvaluation()
    model.learn(64, callback=callback, reset_num_timesteps=False)
    ((log_prob, recorded, entropy_shape),) = callback.results
    np.testing.assert_allclose(log_prob, recorded, rtol=1e-5, atol=1e-5)
    assert log_prob.shape == entropy_shape == (64 * 16,)


def test_bad_spaces_give_a_clear_error():
    with pytest.raises(ValueError, match=r"expected a \(B, F\) Box and a \(B,\) Box"):
        RLKD("RLKDPolicy", make_vec_env("Pendulum-v1", n_envs=1))
    with pytest.raises(ValueError, match="reward_scale=0"):
        small_rlkd(credit_env(), reward_scale=0)


# -- learning ------------------------------------------------------------------------------------------
def mean_miss(model: RLKD, seed: int = 123) -> float:
    env = InstanceCreditEnv()
    obs, _ = env.reset(seed=seed)
    misses = []
    for _ in range(20):
        action, _ = model.predict(obs[None], deterministic=True)
        misses.append(np.mean((action[0] - env.target(obs)) ** 2))
        obs = env._draw()
    return float(np.mean(misses))


@pytest.mark.slow
def test_calibration_learns_per_instance_credit():
    """The batch reward is a mean over instances; the fitted corrector must tell the instances apart
    (its calibrated rewards rank each instance's own miss), and the actor learns the per-instance target."""
    model = small_rlkd(credit_env(), reward_calibration=True)
    before = mean_miss(model)
    model.learn(64 * 30)
    assert mean_miss(model) < 0.5 * before
    env = InstanceCreditEnv()
    obs, _ = env.reset(seed=7)
    obs = np.stack([env._draw() for _ in range(50)])
    actions = np.random.default_rng(0).uniform(-1, 1, obs.shape[:2]).astype(np.float32)
    own = -((actions - env.target(obs)) ** 2)
    batch_rewards = torch.as_tensor(own.mean(-1) * model.reward_scale)
    with torch.no_grad():
        predicted = model.policy.reward_corrector(torch.as_tensor(obs), torch.as_tensor(actions))
    calibrated = calibrate(predicted, batch_rewards).numpy()
    # Within each batch, the calibrated reward follows the instance's own miss.
    within = [np.corrcoef(c, o)[0, 1] for c, o in zip(calibrated, own)]
    assert np.mean(within) > 0.8


def test_same_seed_same_agent_and_save_load(tmp_path):
    # One after the other: SB3 seeds NumPy's global generator at construction, and minibatches draw from it.
    a = small_rlkd(credit_env(0), seed=4)
    a.learn(128)
    b = small_rlkd(credit_env(0), seed=4)
    b.learn(128)
    obs = np.random.default_rng(3).random((1, 16, 3), dtype=np.float32)
    np.testing.assert_array_equal(a.predict(obs, deterministic=True)[0], b.predict(obs, deterministic=True)[0])
    a.save(tmp_path / "rlkd.zip")
    loaded = RLKD.load(tmp_path / "rlkd.zip", env=credit_env(0), device="cpu")
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], a.predict(obs, deterministic=True)[0])
    for name in ("state_updater", "reward_corrector"):
        for p, q in zip(getattr(a.policy, name).parameters(), getattr(loaded.policy, name).parameters()):
            torch.testing.assert_close(p, q)
    assert loaded.corrector_optimizer.state_dict()["state"], "C's Adam state is saved"
    loaded.learn(64)  # and it goes on training


def test_ablations_drop_their_modules():
    model = small_rlkd(credit_env(), reward_calibration=False, state_updater=False)
    assert model.policy.reward_corrector is None and model.policy.state_updater is None
    assert model.corrector_optimizer is None and model.updater_optimizer is None
    model.learn(64)
    groups = model.policy.optimizer.param_groups
    assert [g["lr"] for g in groups] == pytest.approx([3e-3, 3e-2])  # critic at critic_lr_scale times the actor


def test_trains_on_temperature_kd_with_the_yaml_exploration(tiny_kwargs, tmp_path):
    hyperparams = {"n_steps": 8, "batch_size": 4, "n_epochs": 1, "policy_kwargs": {"net_arch": [8]}}
    trained = train_agent("rlkd", "TemperatureKD-v0", 0, tmp_path, total_timesteps=16, env_kwargs=tiny_kwargs,
                          hyperparams=hyperparams, progress_bar=False, tensorboard=False)  # fmt: skip
    train_env = trained.model.get_env().envs[0].unwrapped
    assert train_env.options.exploration == "entropy_mixup"  # from the YAML, for training only
    # Entries evaluate on the plain env; config.json holds the task as JSON (its dict), as an entry does.
    assert trained.config["env_kwargs"] == {**tiny_kwargs, "task": tiny_kwargs["task"].to_dict()}
    loaded = load_agent(tmp_path)
    assert loaded.config["env_kwargs"] == trained.config["env_kwargs"]
    assert isinstance(loaded.model.policy, RLKDPolicy)
    env = gym.make("TemperatureKD-v0", **tiny_kwargs)
    obs, _ = env.reset(seed=0)
    action, _ = loaded.model.predict(obs, deterministic=True)
    assert action.shape == (32,) and np.all(np.abs(action) <= 1)
