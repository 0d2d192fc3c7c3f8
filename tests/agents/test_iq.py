"""IQ / IQ-RE: k-means by hand, separate heads, contexts in the replay buffer, the loss against DQN's and
by hand, learning, reproducibility, save/load, the fixed random encoder and argument checks."""

from __future__ import annotations

import csv
import hashlib

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from gymnasium import spaces
from sklearn.cluster import KMeans
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger, configure
from stable_baselines3.dqn.policies import DQNPolicy

from agents.common.registry import HYPERPARAMS_DIR
from agents.iq.buffers import ContextReplayBuffer, ContextReplayBufferSamples
from agents.iq.iq import IQ, IQRE, head_distillation_loss, taken_action_values
from agents.iq.policies import IQPolicy, OnlineKMeans, RandomNatureEncoder

CARTPOLE_OBS = spaces.Box(-np.inf, np.inf, (4,), np.float32)


class FakeImageEnv(gym.Env):
    """Stacked 84x84 uint8 frames of one grey level drawn per step, 3 actions, 20-step episodes, reward =
    action == 1: a tiny stand-in for Atari that IQ-RE can run on without ale-py."""

    observation_space = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    action_space = spaces.Discrete(3)

    def _frame(self):
        return np.full(self.observation_space.shape, self.np_random.integers(0, 256), dtype=np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._frame(), {}

    def step(self, action):
        self._t += 1
        return self._frame(), float(action == 1), False, self._t == 20, {}


def small_iq(env=None, seed=0, cls=IQ, policy="MlpPolicy", **kwargs):
    params = dict(learning_starts=200, cluster_warmup=200, buffer_size=5000, batch_size=32, train_freq=16,
                  gradient_steps=4, target_update_interval=100, learning_rate=2.3e-3, exploration_fraction=0.3,
                  exploration_final_eps=0.05, policy_kwargs=dict(net_arch=[32]))  # fmt: skip
    params.update(kwargs)
    return cls(policy, env if env is not None else gym.make("CartPole-v1"), seed=seed, **params)


def fill_buffer(model, n: int, seed: int = 0, contexts=None, next_contexts=None) -> None:
    """``n`` random CartPole-shaped transitions in the model's replay buffer (contexts 0 unless given)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        obs, next_obs = rng.normal(size=(2, 1, 4)).astype(np.float32)
        args = (obs, next_obs, rng.integers(0, 2, (1, 1)), rng.normal(size=1), rng.random(1) < 0.1, [{}])
        if isinstance(model.replay_buffer, ContextReplayBuffer):
            c = np.array([0 if contexts is None else contexts[i]])
            c_next = np.array([0 if next_contexts is None else next_contexts[i]])
            model.replay_buffer.add(*args, contexts=c, next_contexts=c_next)
        else:
            model.replay_buffer.add(*args)


def silent_logger() -> Logger:
    return Logger(folder=None, output_formats=[])


# -- OnlineKMeans ----------------------------------------------------------------------------------
def test_sequential_update_matches_hand_computation():
    kmeans = OnlineKMeans(2, 2, normalization="none")
    kmeans.centres.copy_(torch.tensor([[0.0, 0.0], [4.0, 0.0]]))
    kmeans.counts.copy_(torch.tensor([1, 1]))
    kmeans.fitted.fill_(True)
    labels = kmeans.update(torch.tensor([[1.0, 0.0], [3.0, 0.0], [1.0, 1.0]]))
    # (1,0) -> centre 0: n=2, μ0 = (0.5, 0); (3,0) -> centre 1: n=2, μ1 = (3.5, 0);
    # (1,1) -> centre 0 (1.25 < 7.25): n=3, μ0 = (0.5, 0) + ((1,1) − (0.5,0))/3 = (2/3, 1/3).
    assert labels.tolist() == [0, 1, 0]
    assert kmeans.counts.tolist() == [3, 2]
    torch.testing.assert_close(kmeans.centres, torch.tensor([[2 / 3, 1 / 3], [3.5, 0.0]]))


def test_sequential_update_in_the_standardised_space():
    kmeans = OnlineKMeans(2, 2)
    kmeans.mean.copy_(torch.tensor([10.0, 0.0]))
    kmeans.std.copy_(torch.tensor([2.0, 100.0]))
    kmeans.centres.copy_(torch.tensor([[0.0, 0.0], [4.0, 0.0]]))
    kmeans.counts.copy_(torch.tensor([1, 1]))
    kmeans.fitted.fill_(True)
    # x = (16, 100) is z = (3, 1): nearer centre 1 (2 < 10); μ1 = (4,0) + ((3,1) − (4,0))/2 = (3.5, 0.5).
    assert kmeans.update(torch.tensor([[16.0, 100.0]])).tolist() == [1]
    torch.testing.assert_close(kmeans.centres[1], torch.tensor([3.5, 0.5]))


def test_fit_assign_and_frozen_standardisation():
    gen = torch.Generator().manual_seed(0)
    # Two blobs whose second coordinate is on a 100x larger scale: standardising keeps both in play.
    scale = torch.tensor([0.1, 10.0])
    states = torch.cat([torch.randn(30, 2, generator=gen) * scale,
                        torch.tensor([1.0, 0.0]) + torch.randn(30, 2, generator=gen) * scale])  # fmt: skip
    kmeans = OnlineKMeans(2, 2)
    assert kmeans.assign(states).tolist() == [0] * 60  # before fit
    with pytest.raises(RuntimeError, match="before fit"):
        kmeans.update(states[:1])
    labels = kmeans.fit(states, seed=0)
    assert len(set(labels[:30].tolist())) == 1 and len(set(labels[30:].tolist())) == 1 and labels[0] != labels[30]
    mean, std = states.mean(0), states.std(0, correction=0)
    torch.testing.assert_close(kmeans.mean, mean)
    torch.testing.assert_close(kmeans.std, std)
    reference = KMeans(2, n_init=10, random_state=0).fit(((states - mean) / std).double().numpy())
    torch.testing.assert_close(kmeans.centres, torch.as_tensor(reference.cluster_centers_, dtype=torch.float32))
    assert kmeans.counts.tolist() == torch.bincount(labels, minlength=2).tolist()
    assert torch.equal(kmeans.assign(states), labels)

    kmeans.update(torch.tensor([[50.0, 5000.0], [-50.0, -5000.0]]))  # far outliers move centres, not the scale
    torch.testing.assert_close(kmeans.mean, mean)
    torch.testing.assert_close(kmeans.std, std)
    assert kmeans.counts.sum().item() == 62

    state = kmeans.state_dict()
    assert set(state) == {"centres", "counts", "mean", "std", "fitted"}
    restored = OnlineKMeans(2, 2)
    restored.load_state_dict(state)
    assert bool(restored.fitted) and torch.equal(restored.assign(states), kmeans.assign(states))
    with pytest.raises(ValueError, match="at least 4"):
        OnlineKMeans(4, 2).fit(states[:3])
    with pytest.raises(ValueError, match="normalization='minmax'"):
        OnlineKMeans(2, 2, normalization="minmax")


def test_a_copy_of_the_k_means_moves_its_own_centres_and_a_load_moves_the_loaded_ones():
    """update() works on NumPy views of the buffers, kept between calls: a deep copy, a pickle and a
    load_state_dict(assign=True) must each update the centres they hold, never the original's."""
    import copy
    import pickle

    kmeans = OnlineKMeans(2, 2, normalization="none")
    kmeans.centres.copy_(torch.tensor([[0.0, 0.0], [4.0, 0.0]]))
    kmeans.counts.copy_(torch.tensor([1, 1]))
    kmeans.fitted.fill_(True)
    kmeans.update(torch.tensor([[1.0, 0.0]]))  # the views are made here: centre 0 -> (0.5, 0)
    before = kmeans.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    assigned = OnlineKMeans(2, 2, normalization="none")
    assigned.fitted.fill_(True)
    assigned.update(torch.tensor([[9.0, 9.0]]))  # views of its first tensors, which the load replaces
    assigned.load_state_dict({k: v.clone() for k, v in before.items()}, assign=True)
    for other in (copy.deepcopy(kmeans), pickle.loads(pickle.dumps(kmeans)), assigned):
        assert other.update(torch.tensor([[3.0, 0.0]])).tolist() == [1]  # centre 1 -> (3.5, 0)
        torch.testing.assert_close(other.centres, torch.tensor([[0.5, 0.0], [3.5, 0.0]]))
        assert other.counts.tolist() == [2, 2]
        assert all(torch.equal(kmeans.state_dict()[k], before[k]) for k in before)  # the original: untouched
    # The original's own views still move its own centres.
    kmeans.update(torch.tensor([[3.0, 0.0]]))
    assert kmeans.counts.tolist() == [2, 2]


def test_std_is_floored_for_constant_dimensions():
    kmeans = OnlineKMeans(2, 2)
    kmeans.fit(torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0]]), seed=0)
    assert kmeans.std[1].item() == pytest.approx(1e-6)


# -- the multi-head Q-network ----------------------------------------------------------------------
@pytest.mark.parametrize("n_contexts", [2, 4])
def test_heads_have_their_own_weights(n_contexts):
    torch.manual_seed(0)
    policy = IQPolicy(CARTPOLE_OBS, spaces.Discrete(3), lambda _: 1e-3, n_contexts=n_contexts, net_arch=[16])
    q_net = policy.q_net
    obs = torch.randn(5, 4)
    q = q_net(obs)
    assert q.shape == (5, n_contexts, 3)
    for h in range(1, n_contexts):
        assert not torch.allclose(q[:, 0], q[:, h])
    # Each head is its own rows of the fused layer, in the target network too.
    assert q_net.head(1)[0].shape == (3, 16)
    assert policy.q_net_target.heads.weight.data_ptr() != q_net.heads.weight.data_ptr()

    with torch.no_grad():
        q_net.head(0)[0].add_(1.0)
    perturbed = q_net(obs)
    assert not torch.allclose(perturbed[:, 0], q[:, 0])
    torch.testing.assert_close(perturbed[:, 1:], q[:, 1:])

    contexts = torch.tensor([0, 1, 1, 0, n_contexts - 1])
    chosen = q_net.q_values(obs, contexts)
    for i, c in enumerate(contexts.tolist()):
        torch.testing.assert_close(chosen[i], perturbed[i, c])

    q_net.copy_head_to_all(0)
    copied = q_net(obs)
    for h in range(n_contexts):
        torch.testing.assert_close(copied[:, h], perturbed[:, 0])


def test_optimizer_and_target_leave_the_context_model_alone():
    env = FakeImageEnv()
    model = IQRE("CnnPolicy", env, seed=0, learning_starts=64, cluster_warmup=64, buffer_size=128)
    policy = model.policy
    optimized = {id(p) for group in policy.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in policy.q_net.parameters()}
    encoder = list(policy.context_model.parameters())
    assert encoder and all(not p.requires_grad for p in encoder)
    assert sum(type(m).__name__ == "ContextModel" for m in policy.modules()) == 1
    assert not any(type(m).__name__ == "ContextModel" for m in policy.q_net_target.modules())


# -- contexts in the replay buffer -----------------------------------------------------------------
def test_replay_buffer_returns_the_context_stored_at_insertion():
    buffer = ContextReplayBuffer(16, CARTPOLE_OBS, spaces.Discrete(2), device="cpu", n_envs=2)
    for step in range(6):
        contexts = np.array([step % 4, (step + 1) % 4])
        obs = np.repeat(contexts[:, None], 4, axis=1).astype(np.float32)  # each obs carries its context
        next_obs = (obs + 1) % 4  # and each next obs its own
        args = (obs, next_obs, np.zeros((2, 1)), np.zeros(2), np.zeros(2), [{}, {}])
        if step % 2:
            buffer.add(*args, contexts=contexts, next_contexts=(contexts + 1) % 4)
        else:
            buffer.set_pending_contexts(contexts, (contexts + 1) % 4)
            buffer.add(*args)
    np.random.seed(0)
    samples = buffer.sample(64)
    assert isinstance(samples, ContextReplayBufferSamples) and samples.contexts.dtype == torch.long
    assert torch.equal(samples.contexts, samples.observations[:, 0].long())
    assert torch.equal(samples.next_contexts, samples.next_observations[:, 0].long())
    assert len(set(samples.contexts.tolist())) == 4
    with pytest.raises(ValueError, match="no contexts"):
        buffer.add(*args)
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        ContextReplayBuffer(16, CARTPOLE_OBS, spaces.Discrete(2), optimize_memory_usage=True,
                            handle_timeout_termination=False)  # fmt: skip


def test_each_state_is_assigned_once_when_observed_and_stored_with_both_contexts():
    """ω(s_t) and ω(s_{t+1}) replayed by hand from the buffer: batch k-means on the warm-up's s_t (its
    s_{t+1} by the nearest centre), then one sequential update per observed state, in order: each
    s_{t+1}, and the first state of a new episode after an episode ends."""
    model = small_iq(gym.make("CartPole-v1"), cluster_warmup=60, learning_starts=400)
    model.learn(400)  # no gradient step: only the contexts are under test
    buffer, warmup = model.replay_buffer, 60
    rows = buffer.pos
    obs, next_obs = (torch.as_tensor(a[:rows, 0]) for a in (buffer.observations, buffer.next_observations))
    ended = buffer.dones[:rows, 0].astype(bool)

    replay = OnlineKMeans(4, 4)
    assert np.array_equal(buffer.contexts[:warmup, 0], replay.fit(obs[:warmup], seed=0).numpy())
    assert np.array_equal(buffer.next_contexts[:warmup, 0], replay.assign(next_obs[:warmup]).numpy())
    # At the fit, the state the agent stands in (row warmup's s_t) is observed afresh.
    current = int(replay.update(obs[warmup : warmup + 1])[0])
    for r in range(warmup, rows):
        assert buffer.contexts[r, 0] == current, r
        after = int(replay.update(next_obs[r : r + 1])[0])
        assert buffer.next_contexts[r, 0] == after, r
        current = int(replay.update(obs[r + 1 : r + 2])[0]) if ended[r] and r + 1 < rows else after
    assert torch.equal(model.policy.context_model.kmeans.centres, replay.centres)
    assert ended[warmup:].any() and len(np.unique(buffer.next_contexts[:rows])) > 1
    # Continuing trajectories: the next state's context is the next transition's context.
    going_on = ~ended[: rows - 1]
    assert np.array_equal(buffer.next_contexts[: rows - 1, 0][going_on], buffer.contexts[1:rows, 0][going_on])


@pytest.mark.parametrize("n_envs", [1, 2])
def test_warmup_may_outlast_learning_starts_and_every_head_starts_as_head_0(n_envs):
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)
    model = small_iq(env, cluster_warmup=300, learning_starts=100, train_freq=16, gradient_steps=2)
    heads = []

    class AtFit(BaseCallback):
        def _on_step(self):
            if bool(self.model.policy.context_model.kmeans.fitted) and not heads:
                q = self.model.q_net(torch.randn(7, 4))
                heads.append(q)
            return True

    model.learn(400, callback=AtFit())
    assert model._n_updates > 0 and heads  # trained before the fit, then fitted
    q = heads[0]
    for h in range(1, 4):
        torch.testing.assert_close(q[:, h], q[:, 0])
    assert model.policy.context_model.kmeans.counts.sum().item() >= model.num_timesteps


def test_head_0_learns_alone_during_the_warmup():
    """Until the k-means every transition is context 0: λ = 0, so an agent with distillation trains
    exactly as one without, and heads 1..k-1 (overwritten at the fit) are never touched."""
    common = dict(cluster_warmup=300, learning_starts=100, train_freq=16, gradient_steps=4, target_update_interval=50)
    untrained = small_iq(distillation_weight=1.0, **common).q_net.state_dict()
    models = []
    for weight in (1.0, 0.0):  # each built and trained in turn: the replay draws from NumPy's global generator
        models.append(small_iq(distillation_weight=weight, **common))
        models[-1].learn(288)  # 18 rollouts of 16 steps: 288 warm-up states, trained from step 112
    assert models[0]._n_updates > 0 and not models[0].policy.context_model.kmeans.fitted
    for name, value in models[0].policy.state_dict().items():
        assert torch.equal(value, models[1].policy.state_dict()[name]), name
    assert models[0].current_distillation_weight == 0.0
    q_net, n_actions = models[0].q_net, 2
    trained_rows, other_rows = slice(0, n_actions), slice(n_actions, None)
    assert not torch.equal(q_net.heads.weight[trained_rows], untrained["heads.weight"][trained_rows])
    assert torch.equal(q_net.heads.weight[other_rows], untrained["heads.weight"][other_rows])
    assert torch.equal(q_net.heads.bias[other_rows], untrained["heads.bias"][other_rows])


def test_the_fit_resets_the_optimizer_state_of_the_overwritten_heads():
    model = small_iq(n_contexts=3)
    n = 60
    fill_buffer(model, n, contexts=np.arange(n) % 3, next_contexts=(np.arange(n) + 1) % 3)
    model.set_logger(silent_logger())
    model.train(gradient_steps=3, batch_size=32)  # every head's rows get gradients, hence moments
    optimizer = model.policy.optimizer
    heads = (model.q_net.heads.weight, model.q_net.heads.bias)
    n_actions = 2  # head h is rows 2h, 2h + 1 of the fused layer and of its optimizer state
    before = {id(p): {k: v.clone() for k, v in optimizer.state[p].items()} for p in model.policy.q_net.parameters()}
    for param in heads:
        for h in range(3):
            assert optimizer.state[param]["exp_avg_sq"][h * n_actions : (h + 1) * n_actions].abs().sum() > 0
    buffer = model.replay_buffer
    model._warmup_states = [torch.as_tensor(buffer.observations[:n, 0])]
    model._warmup_next_states = [torch.as_tensor(buffer.next_observations[:n, 0])]
    model._warmup_positions = list(range(n))
    model._fit_contexts(buffer)

    for param in model.policy.q_net.parameters():
        for key, value in optimizer.state[param].items():
            if not any(param is head for head in heads) or value.shape != param.shape:
                assert torch.equal(value, before[id(param)][key]), key  # the trunk and the step count kept
                continue
            assert torch.equal(value[:n_actions], before[id(param)][key][:n_actions]), key  # head 0 kept
            assert not value[n_actions:].any(), key  # heads 1 and 2: no moments
    q = model.q_net(torch.randn(5, 4))
    torch.testing.assert_close(q[:, 1], q[:, 0])


# -- the loss --------------------------------------------------------------------------------------
def test_distillation_term_by_hand():
    online = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]])
    target = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    # Huber of the differences: [0.5, 1.5, 0] and [0.125, 1.0, 2.5]; without heads 0 and 2: 1.5 and 1.125.
    loss = head_distillation_loss(online, target, torch.tensor([0, 2]))
    assert loss.item() == pytest.approx((1.5 + 1.125) / 2)


def test_iq_loss_terms_by_hand():
    model = small_iq(n_contexts=3, distillation_weight=2.0)
    fill_buffer(model, 50, contexts=np.arange(50) % 3, next_contexts=(np.arange(50) + 1) % 3)
    with torch.no_grad():  # online heads away from the target's, so the distillation term is not zero
        for p in model.q_net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    data = model.replay_buffer.sample(6)
    terms = model.losses(data, 2.0)

    online, earlier = model.q_net(data.observations), model.q_net_target(data.observations)
    next_target = model.q_net_target(data.next_observations)
    td, distillation, errors = [], [], []
    assert (data.next_contexts != data.contexts).all()
    for i in range(6):
        a, c, c_next = int(data.actions[i]), int(data.contexts[i]), int(data.next_contexts[i])
        # Bootstrapped from the head of the next state's context, not of this one.
        y = data.rewards[i, 0] + (1 - data.dones[i, 0]) * model.gamma * next_target[i, c_next].max()
        errors.append(y - online[i, c, a])
        td.append(torch.nn.functional.smooth_l1_loss(online[i, c, a], y))
        huber = [torch.nn.functional.smooth_l1_loss(online[i, h, a], earlier[i, h, a]) for h in range(3) if h != c]
        distillation.append(sum(huber))
    torch.testing.assert_close(terms["td"], torch.stack(td).mean())
    torch.testing.assert_close(terms["distillation"], torch.stack(distillation).mean())
    assert terms["distillation"].item() > 0
    torch.testing.assert_close(terms["loss"], terms["td"] + 2.0 * terms["distillation"])
    torch.testing.assert_close(model.td_errors(data), torch.stack(errors).detach())


def test_one_context_without_distillation_is_dqn():
    env = gym.make("CartPole-v1")
    common = dict(learning_starts=10, batch_size=16, learning_rate=1e-2, policy_kwargs=dict(net_arch=[32]), seed=0)
    dqn = DQN("MlpPolicy", env, **common)
    iq = IQ("MlpPolicy", env, n_contexts=1, distillation_weight=0.0, cluster_warmup=1, **common)
    with torch.no_grad():
        for p in dqn.q_net_target.parameters():  # a target that differs from the online network
            p.add_(0.1 * torch.randn_like(p))
    for ours, theirs in ((iq.q_net, dqn.q_net), (iq.q_net_target, dqn.q_net_target)):
        ours.shared[0].load_state_dict(theirs.q_net[0].state_dict())
        ours.heads.load_state_dict(theirs.q_net[2].state_dict())
    for model in (dqn, iq):
        fill_buffer(model, 40)
        model.set_logger(silent_logger())
        np.random.seed(1)  # the same minibatches for both
        model.train(gradient_steps=3, batch_size=16)
    # The same loss, averaged in float32 here and in float64 by DQN.
    assert iq.logger.name_to_value["train/loss"] == pytest.approx(dqn.logger.name_to_value["train/loss"], rel=1e-6)
    assert "train/distillation_loss" not in iq.logger.name_to_value  # λ = 0: L_KD is not computed
    for ours, theirs in ((iq.q_net.shared[0], dqn.q_net.q_net[0]), (iq.q_net.heads, dqn.q_net.q_net[2])):
        for name, value in ours.state_dict().items():
            torch.testing.assert_close(value, theirs.state_dict()[name], rtol=0, atol=1e-7)


def test_anchor_lags_the_online_network_and_holds_the_other_heads():
    model = small_iq(anchor_update_interval=256, target_update_interval=10, train_freq=16, gradient_steps=4)
    snapshots = {}

    class OnlineAtRolloutStart(BaseCallback):
        def _on_rollout_start(self):
            snapshots[self.model.num_timesteps] = {k: v.clone() for k, v in self.model.q_net.state_dict().items()}

        def _on_step(self):
            return True

    model.learn(320, callback=OnlineAtRolloutStart())
    anchor = model.policy.q_net_anchor
    assert anchor is not None and model.policy.distillation_anchor is anchor
    # Refreshed at the 256th env step, inside the rollout of steps 241-256: the online net trained at step 240.
    for name, value in anchor.state_dict().items():
        assert torch.equal(value, snapshots[240][name]), name
    assert not torch.equal(anchor.heads.weight, model.q_net.heads.weight)
    optimized = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in anchor.parameters()}
    # L_KD is taken against the anchor, not the target network.
    data = model.replay_buffer.sample(8)
    online = taken_action_values(model.q_net(data.observations), data.actions)
    earlier = taken_action_values(anchor(data.observations), data.actions)
    torch.testing.assert_close(model.losses(data, 1.0)["distillation"],
                               head_distillation_loss(online, earlier, data.contexts))  # fmt: skip
    assert small_iq().policy.q_net_anchor is None and small_iq().policy.distillation_anchor is not None


def test_distillation_weight_follows_the_exploration_schedule():
    model = small_iq(exploration_fraction=0.5, exploration_final_eps=0.1)
    fill_buffer(model, 40)
    model.policy.context_model.kmeans.fit(torch.randn(20, 4), seed=0)  # λ is 0 until the contexts exist
    model.set_logger(silent_logger())
    for progress_remaining in (1.0, 0.8, 0.6, 0.2):
        model.exploration_rate = model.exploration_schedule(progress_remaining)
        model.train(gradient_steps=1, batch_size=8)
        expected = 1.0 - model.exploration_rate
        assert model.current_distillation_weight == pytest.approx(expected)
        assert model.logger.name_to_value["train/distillation_weight"] == pytest.approx(expected)
    assert model.current_distillation_weight == pytest.approx(0.9)
    constant = small_iq(distillation_weight=0.3)
    assert constant.current_distillation_weight == 0.0
    constant.policy.context_model.kmeans.fit(torch.randn(20, 4), seed=0)
    assert constant.current_distillation_weight == 0.3


# -- learning, reproducibility, save/load ----------------------------------------------------------
class WeightAtTrainTime(BaseCallback):
    """(λ logged by the last train(), 1 − ε at that time) at each rollout start, when both are current."""

    def __init__(self):
        super().__init__()
        self.pairs = []

    def _on_rollout_start(self) -> None:
        logged = self.logger.name_to_value.get("train/distillation_weight")
        if logged is not None:
            self.pairs.append((logged, 1.0 - self.model.exploration_rate))

    def _on_step(self) -> bool:
        return True


LEARN_STEPS = 1504  # a multiple of train_freq: learn stops exactly there


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("iq")
    model = small_iq()
    model.set_logger(configure(str(folder), ["csv"]))
    callback = WeightAtTrainTime()
    model.learn(LEARN_STEPS, callback=callback, log_interval=5, progress_bar=True)
    return model, folder, callback


@pytest.mark.filterwarnings("ignore:rich is experimental")  # the progress bar's
def test_learn_logs_the_terms_and_uses_several_contexts(trained):
    model, folder, callback = trained
    assert model.num_timesteps == LEARN_STEPS
    with open(folder / "progress.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("train/td_loss")]
    assert rows and all(np.isfinite(float(r["train/td_loss"])) for r in rows)
    distillation = [float(r["train/distillation_loss"]) for r in rows if r["train/distillation_loss"]]
    assert distillation and all(d >= 0 for d in distillation) and any(d > 0 for d in distillation)
    contexts = model.replay_buffer.contexts[:LEARN_STEPS, 0]
    assert len(np.unique(contexts)) > 1
    assert (model.policy.context_model.kmeans.counts > 0).sum() > 1
    assert len(callback.pairs) > 10
    for logged, expected in callback.pairs:
        assert logged == pytest.approx(expected)
    assert callback.pairs[0][0] < callback.pairs[-1][0]  # λ grows as ε decays


def test_same_seed_same_model(trained):
    model, _, _ = trained
    again = small_iq()
    again.learn(LEARN_STEPS)
    assert np.array_equal(model.replay_buffer.contexts, again.replay_buffer.contexts)
    for (name, value), other in zip(model.policy.state_dict().items(), again.policy.state_dict().values()):
        assert torch.equal(value, other), name


def test_save_load_keeps_actions_and_contexts(trained, tmp_path):
    model, _, _ = trained
    model.save(tmp_path / "iq.zip")
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    loaded = IQ.load(tmp_path / "iq.zip", device="cpu")
    obs = model.replay_buffer.observations[:LEARN_STEPS, 0]
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    as_tensor = torch.as_tensor(obs)
    assert torch.equal(loaded.policy.contexts(as_tensor), model.policy.contexts(as_tensor))
    assert len(set(model.policy.contexts(as_tensor).tolist())) > 1
    assert loaded.policy_kwargs == model.policy_kwargs == {"net_arch": [32]}

    model.policy.save(tmp_path / "policy.pt")
    policy = IQPolicy.load(tmp_path / "policy.pt")
    assert np.array_equal(policy.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])

    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    assert np.array_equal(loaded.replay_buffer.contexts, model.replay_buffer.contexts)
    loaded.set_env(gym.make("CartPole-v1"))
    loaded.learn(64, reset_num_timesteps=False)  # the loaded k-means goes on: no new warm-up
    counts = model.policy.context_model.kmeans.counts.sum().item()
    assert loaded._warmup_states == [] and loaded.policy.context_model.kmeans.counts.sum() >= counts + 64


# -- IQ-RE -----------------------------------------------------------------------------------------
def test_random_encoder_is_seeded_and_never_trained():
    def encoder_state(model):
        return {k: v.clone() for k, v in model.policy.context_model.encoder.state_dict().items()}

    model = small_iq(FakeImageEnv(), cls=IQRE, policy="CnnPolicy", learning_starts=64, cluster_warmup=64,
                     buffer_size=256, batch_size=8, train_freq=4, gradient_steps=1, policy_kwargs=None)  # fmt: skip
    before, q_before = encoder_state(model), model.q_net.features_extractor.cnn[0].weight.clone()
    model.learn(120)
    after = encoder_state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(q_before, model.q_net.features_extractor.cnn[0].weight)  # the Q-network did learn
    assert all(not p.requires_grad for p in model.policy.context_model.parameters())
    assert bool(model.policy.context_model.kmeans.fitted)
    assert len(np.unique(model.replay_buffer.contexts[:120])) > 1

    torch.manual_seed(123)  # the global generator does not matter, only the seed
    assert all(
        torch.equal(before[k], v)
        for k, v in RandomNatureEncoder(FakeImageEnv.observation_space, seed=0).state_dict().items()
    )
    same = IQRE("CnnPolicy", FakeImageEnv(), seed=0, learning_starts=64, cluster_warmup=64, buffer_size=256)
    other = IQRE("CnnPolicy", FakeImageEnv(), seed=1, learning_starts=64, cluster_warmup=64, buffer_size=256)
    assert all(torch.equal(before[k], v) for k, v in encoder_state(same).items())
    assert not all(torch.equal(before[k], v) for k, v in encoder_state(other).items())


# -- argument checks -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_contexts=0), r"n_contexts=0; expected an int >= 1"),
        (dict(cluster_normalization="minmax"), r"cluster_normalization='minmax'; expected one of"),
        (dict(context_encoder="resnet"), r"context_encoder='resnet'; expected one of"),
        (dict(anchor_update_interval=0), r"anchor_update_interval=0; expected None \(the target network\)"),
        (dict(anchor_update_interval=2.5), r"anchor_update_interval=2.5"),
        (dict(cluster_warmup=3), r"cluster_warmup=3; expected an int >= n_contexts \(4\)"),
        (dict(cluster_warmup=200, buffer_size=100), r"cluster_warmup=200; expected a warm-up that fits"),
        (dict(distillation_weight="1-epsilon"), r"distillation_weight='1-epsilon'; expected '1-eps' or a number"),
        (dict(distillation_weight=-0.5), r"distillation_weight=-0.5"),
        (dict(optimize_memory_usage=True, replay_buffer_kwargs=dict(handle_timeout_termination=False)),
         r"optimize_memory_usage=True"),
        (dict(n_steps=3), r"n_steps=3"),
        (dict(policy_kwargs=dict(n_contexts=2)), r"policy_kwargs sets \['n_contexts'\]"),
        (dict(context_encoder="random_nature_cnn"), r"RandomNatureEncoder: observation space .* image"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_iq(**kwargs)


def test_dqn_policy_is_refused():
    with pytest.raises(ValueError, match="policy_class=.*expected IQPolicy"):
        IQ(DQNPolicy, gym.make("CartPole-v1"))


@pytest.mark.parametrize(("algo", "make_env"), [("iq", lambda: gym.make("CartPole-v1")), ("iq_re", FakeImageEnv)])
def test_hyperparameter_files_hold_valid_settings(algo, make_env):
    table = yaml.safe_load((HYPERPARAMS_DIR / f"{algo}.yml").read_text())
    assert table
    for params in table.values():
        kwargs = {k: v for k, v in params.items() if k not in ("n_timesteps", "policy")}
        # Checked without allocating the replay buffer (10k Atari frames for iq_re).
        model = {"iq": IQ, "iq_re": IQRE}[algo](params["policy"], make_env(), _init_setup_model=False, **kwargs)
        model.validate()
        assert model.n_contexts == 4 and model.distillation_weight in ("1-eps", 0.1)


def test_iq_re_on_minatar_clusters_a_random_copy_of_the_policy_trunk():
    pytest.importorskip("minatar")
    from agents.common.torch_layers import MinAtarCNN
    from agents.common.training import build_agent

    model, params = build_agent("iq_re", "MinAtar-Breakout-v1", 0, hyperparams={"learning_starts": 100,
                                "cluster_warmup": 100, "buffer_size": 1000})  # fmt: skip
    assert isinstance(model.q_net.features_extractor, MinAtarCNN) and params["policy"] == "CnnPolicy"
    encoder = model.policy.context_model.encoder
    assert isinstance(encoder.extractor, MinAtarCNN) and encoder.features_dim == 50
    assert all(not p.requires_grad for p in encoder.parameters())
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    model.learn(300)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert bool(model.policy.context_model.kmeans.fitted)
    assert len(np.unique(model.replay_buffer.contexts[:300])) > 1
    with pytest.raises(ValueError, match="features_extractor_class='Nature'"):
        build_agent("dqn", "MinAtar-Breakout-v1", 0, hyperparams={"policy_kwargs": {
            "features_extractor_class": "Nature"}})  # fmt: skip


def test_each_observed_state_is_encoded_once():
    """IQ-RE's random encoder runs once per observed state (each s_{t+1}, and the first state of each
    episode), not again to act: 120 steps of 20-step episodes encode 120 + 6 + 1 states."""
    model = small_iq(FakeImageEnv(), cls=IQRE, policy="CnnPolicy", learning_starts=40, cluster_warmup=40,
                     buffer_size=256, batch_size=8, train_freq=4, gradient_steps=1, policy_kwargs=None,
                     exploration_fraction=0.01)  # fmt: skip
    encoded = []
    model.policy.context_model.encoder.register_forward_hook(lambda module, args, out: encoded.append(len(out)))
    model.learn(120)
    assert sum(encoded) == 120 + 120 // 20 + 1


# -- results pinned across speed work --------------------------------------------------------------
def _sha256(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


# Computed with the code before the speed work of issue 26 (commit 0336932), on this project's CPU
# torch: any change to IQ's arithmetic or to the order of its random draws changes them. Training starts
# after the fit (learning_starts >= cluster_warmup), so the warm-up's λ and optimizer state play no part.
PINNED_RUNS = {
    "anchor, constant λ": (
        dict(n_envs=1, train_freq=64, learning_rate=2.3e-3, anchor_update_interval=200, distillation_weight=0.1),
        "03da4bd857536cb4e1ca86e5a3503227ef98b5da4c9456dc25c0ad69c56030e6",
        "430cdf6f21853c6b645213bc8573e45ca880869a15edc31f7b1966a66982dce3",
    ),
    "target as anchor, λ = 1 − ε": (
        dict(n_envs=1, train_freq=64, learning_rate=2.3e-3, anchor_update_interval=None, distillation_weight="1-eps"),
        "5b4aabfbae937bb4a9041dc34062b9d1200aa5a3464b92dd2e1c39bd03fc7a73",
        "430cdf6f21853c6b645213bc8573e45ca880869a15edc31f7b1966a66982dce3",
    ),
    "two envs": (
        dict(n_envs=2, train_freq=32, anchor_update_interval=200, distillation_weight=0.1),
        "86c04d82e0adfc91b7a50b2d69065ed56523de485854ee248fdbd5864a8f4401",
        "8dbf05a8c77bb1a93f6e1173418505670d2c8c1e99cdc74cdcfb7f01a60505f5",
    ),
}


# Training from step 100 with the fit at 500, so that six training calls fall in the warm-up (λ = 0):
# computed with the warm-up as documented (commit 06319f6) before λ = 0 skipped the anchor's pass and
# L_KD, which must leave every weight as it was.
PINNED_WARMUP_RUNS = {
    "anchor, constant λ": (
        dict(anchor_update_interval=200, distillation_weight=0.1),
        "f4966cb2b0bf8ec6594d944f7c7ab178f8e2c40834c54c1ec7f6528487ac84d2",
        "7d70c151c47ce6d5670587bd8681fe319efd5f957a8f1a834e652e534317fb1a",
    ),
    "target as anchor, λ = 1 − ε": (
        dict(anchor_update_interval=None, distillation_weight="1-eps"),
        "2072977a3ef31e31633d8d4c0fb62ee5f02480c8a0990a611eaf08ba5786bc45",
        "f27e9800279e55a6387c91881334e56812189ffe1d58e7521358be3502bef564",
    ),
}


@pytest.mark.parametrize("case", sorted(PINNED_WARMUP_RUNS))
def test_a_run_that_trains_in_the_warm_up_trains_the_pinned_weights(case):
    """1216 steps on the conflicting cyclic drift, training from step 100 and fitting the contexts at 500:
    skipping the anchor and L_KD while λ = 0 changes no weight and no context."""
    from agents.common.interference import STUDY_SETTINGS

    settings, weights_sha, contexts_sha = PINNED_WARMUP_RUNS[case]
    kwargs = {**STUDY_SETTINGS["conflict_visible"]["env_kwargs"], "phase_length": 300}
    env = gym.make("InterferenceCartPole-v0", **kwargs)
    model = IQ("MlpPolicy", env, seed=3, learning_starts=100, cluster_warmup=500, buffer_size=5000, batch_size=32,
               gradient_steps=16, train_freq=64, learning_rate=2.3e-3, target_update_interval=10,
               exploration_fraction=0.3, policy_kwargs=dict(net_arch=[32, 32]), **settings)  # fmt: skip
    model.learn(1216)
    state = model.policy.state_dict()
    weights = [value for name, tensor in state.items() for value in (np.frombuffer(name.encode(), np.uint8),
                                                                     tensor.cpu().numpy())]  # fmt: skip
    assert _sha256(*weights) == weights_sha
    assert _sha256(model.replay_buffer.contexts[:1216], model.replay_buffer.next_contexts[:1216]) == contexts_sha


def test_the_warm_up_computes_neither_the_anchor_nor_l_kd(monkeypatch):
    """λ = 0: the loss is the TD term alone, the anchor network is never called, and it is the loss that
    λ·L_KD with λ = 0 gives, to the last bit."""
    model = IQ("MlpPolicy", "CartPole-v1", seed=0, learning_starts=0, buffer_size=500, batch_size=16,
               cluster_warmup=200, anchor_update_interval=100, distillation_weight=0.1,
               policy_kwargs=dict(net_arch=[16]))  # fmt: skip
    model.learn(150)
    assert model.current_distillation_weight == 0.0  # not fitted yet
    data = model.replay_buffer.sample(16)
    full = model.losses(data, 1.0)
    calls = []
    monkeypatch.setattr(model.policy.q_net_anchor, "forward", lambda *a: calls.append(a) or 1 / 0)
    warm = model.losses(data, 0.0)
    assert calls == [] and set(warm) == {"td", "loss"}
    assert warm["loss"].item() == (full["td"] + 0.0 * full["distillation"]).item() == full["td"].item()


@pytest.mark.parametrize("case", sorted(PINNED_RUNS))
def test_a_short_run_trains_the_pinned_weights_and_contexts(case):
    """1216 steps on the conflicting cyclic drift (phases of 300 steps): the policy's state_dict and the
    stored contexts are bit for bit what they were before IQ was made faster."""
    from agents.common.interference import STUDY_SETTINGS

    settings, weights_sha, contexts_sha = PINNED_RUNS[case]
    settings = dict(settings)
    n_envs = settings.pop("n_envs")
    env_kwargs = {**STUDY_SETTINGS["conflict_visible"]["env_kwargs"], "phase_length": 300}
    if n_envs == 1:
        env = gym.make("InterferenceCartPole-v0", **env_kwargs)
    else:
        env = make_vec_env("InterferenceCartPole-v0", n_envs=n_envs, seed=3, env_kwargs=env_kwargs)
    model = IQ("MlpPolicy", env, seed=3, learning_starts=300, cluster_warmup=300, buffer_size=5000, batch_size=32,
               gradient_steps=16, target_update_interval=10, exploration_fraction=0.3,
               policy_kwargs=dict(net_arch=[32, 32]), **settings)  # fmt: skip
    model.learn(1216)
    state = model.policy.state_dict()
    weights = [value for name, tensor in state.items() for value in (np.frombuffer(name.encode(), np.uint8),
                                                                     tensor.cpu().numpy())]  # fmt: skip
    assert _sha256(*weights) == weights_sha
    buffer = model.replay_buffer
    rows = slice(None, 1216) if n_envs == 1 else slice(None)
    assert _sha256(buffer.contexts[rows], buffer.next_contexts[rows]) == contexts_sha
