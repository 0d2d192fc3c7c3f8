import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback, StopTrainingOnMaxEpisodes
from stable_baselines3.common.env_util import make_vec_env

from agents.n2n import N2NAgent, N2NConfig, N2NPolicy, obs_as_tensor
from agents.search import AgingEvolution, HillClimbing, RandomSearch

FACTORS = (0.5, 0.75, 1.0)


class FakeN2N(gym.Env):
    """N2NCompress-v0's spaces and episode structure on a made-up teacher with a known best student:
    remove the first half of the layers, keep the rest and shrink layer i by factor index i % K. Reward:
    the fraction of layers treated right (removed, or kept with their factor), 1 at the optimum; -1,
    right after stage 1, when every layer is removed."""

    def __init__(self, num_layers: int = 4, shrink_factors=FACTORS, descriptor_size: int = 8):
        self.n, self.shrink_factors = num_layers, tuple(shrink_factors)
        k = len(self.shrink_factors)
        # A fixed teacher: its layer descriptors do not change between episodes.
        self.descriptors = np.random.default_rng(num_layers).uniform(-1, 1, (num_layers, descriptor_size))
        self.descriptors = self.descriptors.astype(np.float32)
        self.target_removed = np.arange(num_layers) < num_layers // 2
        self.target_factor = np.arange(num_layers) % k
        self.action_space = spaces.Discrete(max(2, k))

        def box(shape, low=-1.0):
            return spaces.Box(low, 1.0, shape, np.float32)

        self.observation_space = spaces.Dict(
            {
                "layers": box((num_layers, descriptor_size)),
                "stage": box((2,), 0.0),
                "position": box((num_layers,), 0.0),
                "kept": box((num_layers,)),
                "shrink": box((num_layers,)),
                "action_mask": box((self.action_space.n,), 0.0),
            }
        )

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.stage, self.position = 0, 0
        self.kept = np.full(self.n, -1.0, np.float32)
        self.shrink = np.full(self.n, -1.0, np.float32)
        self.factor_index = np.full(self.n, -1)
        return self._obs(), {}

    def action_masks(self) -> np.ndarray:
        return self._obs()["action_mask"] > 0

    def _obs(self):
        mask = np.zeros(self.action_space.n, np.float32)
        mask[: 2 if self.stage == 0 else len(self.shrink_factors)] = 1
        position = np.zeros(self.n, np.float32)
        if self.position < self.n:
            position[self.position] = 1
        stage = np.eye(2, dtype=np.float32)[self.stage]
        obs = {"layers": self.descriptors, "stage": stage, "position": position, "kept": self.kept}
        return {**obs, "shrink": self.shrink, "action_mask": mask}

    def step(self, action):
        action = int(action)
        if not self.action_masks()[action]:
            raise ValueError(f"action {action} is invalid in stage {self.stage}")
        if self.stage == 0:
            removed = action == 1
            self.kept[self.position] = 0.0 if removed else 1.0
            if removed:
                self.shrink[self.position] = 0.0
            self.position += 1
            if self.position == self.n:
                if not (self.kept == 1).any():
                    self.position = self.n
                    return self._obs(), -1.0, True, False, self._info()
                self.stage, self.position = 1, int(np.argmax(self.kept == 1))
            return self._obs(), 0.0, False, False, {}
        self.shrink[self.position] = self.shrink_factors[action]
        self.factor_index[self.position] = action
        later = np.flatnonzero(self.kept[self.position + 1 :] == 1)
        if len(later):
            self.position += 1 + int(later[0])
            return self._obs(), 0.0, False, False, {}
        self.position = self.n
        kept = self.kept == 1
        right = np.where(self.target_removed, ~kept, kept & (self.factor_index == self.target_factor))
        return self._obs(), float(right.mean()), True, False, self._info()

    def _info(self):
        kept = self.kept == 1
        return {"architecture": {"kept": kept.tolist()}, "compression": 1 - kept.mean(), "accuracy": 0.5}


def episode(env: gym.Env, agent, seed: int = 0, deterministic: bool = True) -> tuple[float, list[int]]:
    obs, _ = env.reset(seed=seed)
    actions = []
    while True:
        action, _ = agent.predict(obs, deterministic=deterministic)
        assert action.shape == () and action.dtype == np.int64
        actions.append(int(action))
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return reward, actions


def random_observations(env: FakeN2N, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Observations of both stages from random episodes, stacked into a batch."""
    rng = np.random.default_rng(seed)
    observations = []
    obs, _ = env.reset(seed=seed)
    while len(observations) < count:
        observations.append(obs)
        obs, _, terminated, _, _ = env.step(rng.choice(np.flatnonzero(obs["action_mask"])))
        if terminated:
            obs, _ = env.reset()
    return {k: np.stack([o[k] for o in observations]) for k in observations[0]}


# A quick learner for the tiny problem: from seeds 0-19, 1200 steps reach the optimum every time.
FAST = dict(learning_rate=0.01, baseline_decay=0.8)


@pytest.fixture(scope="module")
def trained():
    return N2NAgent("N2NPolicy", FakeN2N(), seed=0, **FAST).learn(1200)


def test_predict_shapes_for_single_and_batched_observations():
    env = FakeN2N()
    agent = N2NAgent("N2NPolicy", env, seed=0)
    obs, _ = env.reset(seed=0)
    action, state = agent.predict(obs)
    assert action.shape == () and action.dtype == np.int64 and state is None
    batch = random_observations(env, 12)
    actions, _ = agent.predict(batch)
    assert actions.shape == (12,) and actions.dtype == np.int64
    assert all(batch["action_mask"][i, a] == 1 for i, a in enumerate(actions))
    vec_env = make_vec_env(FakeN2N, n_envs=1, seed=0)
    vec_action, _ = N2NAgent("N2NPolicy", vec_env, seed=0).predict(vec_env.reset())
    assert vec_action.shape == (1,)


def test_logits_are_masked_to_each_stage():
    env = FakeN2N(shrink_factors=(0.25, 0.5, 0.75, 1.0))
    agent = N2NAgent(N2NPolicy, env, seed=0)
    batch = random_observations(env, 30)
    with torch.no_grad():
        probs = agent.policy.get_distribution(obs_as_tensor(batch)).probs.numpy()
    removal = batch["stage"][:, 0] == 1
    assert removal.any() and (~removal).any()
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    assert (probs[removal, 2:] == 0).all() and (probs[removal, :2] > 0).all()
    assert (probs[~removal] > 0).all()


def test_shrink_policy_sees_only_the_kept_layers_up_to_the_current_one():
    env = FakeN2N(num_layers=6)
    agent = N2NAgent("N2NPolicy", env, seed=0)
    obs, _ = env.reset(seed=0)
    for action in (0, 1, 0, 0, 0, 0, 2):  # remove layer 1, shrink layer 0 by factor 2, now at layer 2
        obs, *_ = env.step(action)
    assert obs["stage"][1] == 1 and obs["position"][2] == 1

    def logits(o):
        with torch.no_grad():
            return agent.policy(obs_as_tensor({k: v[None] for k, v in o.items()}))[0]

    base = logits(obs)
    for layer, same in ((1, True), (4, True), (0, False), (2, False)):  # removed, later, earlier, current
        changed = {**obs, "layers": obs["layers"].copy()}
        changed["layers"][layer] += 0.5
        assert torch.equal(logits(changed), base) == same, layer
    other_factor = {**obs, "shrink": obs["shrink"].copy()}
    other_factor["shrink"][0] = FACTORS[1]
    assert not torch.equal(logits(other_factor), base)


def test_agent_learns_the_best_student(trained):
    env = FakeN2N()
    reward, actions = episode(env, trained)
    assert reward == 1.0
    assert actions == [1, 1, 0, 0, 2, 0]  # remove 0 and 1, keep 2 and 3, factors 2 % 3 and 3 % 3
    untrained = N2NAgent("N2NPolicy", env, seed=0)
    random_mean = np.mean([episode(env, untrained, seed, deterministic=False)[0] for seed in range(50)])
    trained_mean = np.mean([episode(env, trained, seed, deterministic=False)[0] for seed in range(50)])
    assert random_mean < 0.6 < 0.8 < trained_mean
    assert trained.num_timesteps == 1200 and trained.baseline > 0.7


def test_same_seed_same_parameters():
    def parameters(seed: int) -> list[torch.Tensor]:
        agent = N2NAgent("N2NPolicy", FakeN2N(), seed=seed, **FAST).learn(150)
        return [p.detach().clone() for p in agent.policy.parameters()]

    first, again, other = parameters(3), parameters(3), parameters(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_save_load_round_trip(trained, tmp_path):
    trained.save(tmp_path / "model.zip")
    loaded = N2NAgent.load(tmp_path / "model.zip")
    batch = random_observations(FakeN2N(), 40)
    np.testing.assert_array_equal(*(a.predict(batch, deterministic=True)[0] for a in (loaded, trained)))
    with torch.no_grad():
        assert torch.equal(loaded.policy(obs_as_tensor(batch)), trained.policy(obs_as_tensor(batch)))
    assert (loaded.baseline, loaded.num_timesteps, loaded.config) == (
        trained.baseline,
        trained.num_timesteps,
        trained.config,
    )
    assert loaded.get_env() is None
    # Loaded with an env it trains on; kwargs override the saved hyperparameters.
    again = N2NAgent.load(tmp_path / "model.zip", env=FakeN2N(), learning_rate=1e-3).learn(20)
    assert again.config.learning_rate == 1e-3 == again.policy.optimizer.param_groups[0]["lr"]


def test_policy_transfers_to_a_teacher_with_more_layers(trained, tmp_path):
    trained.save(tmp_path / "model.zip")
    bigger = FakeN2N(num_layers=6)
    agent = N2NAgent.load(tmp_path / "model.zip", env=bigger)
    for seed in range(3):  # FakeN2N raises on an invalid action
        reward, actions = episode(bigger, agent, seed)
        assert 6 <= len(actions) <= 12 and -1 <= reward <= 1
    agent.learn(50)
    assert agent.num_timesteps == 50


@pytest.mark.parametrize("env_kwargs", [{"shrink_factors": (0.25, 0.5, 0.75, 1.0)}, {"descriptor_size": 5}])
def test_load_rejects_an_env_with_other_factors_or_descriptors(trained, tmp_path, env_kwargs):
    trained.save(tmp_path / "model.zip")
    with pytest.raises(ValueError, match="saved policy needs descriptor size 8 and 3 shrink factors"):
        N2NAgent.load(tmp_path / "model.zip", env=FakeN2N(**env_kwargs))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="policy='MlpPolicy'"):
        N2NAgent("MlpPolicy", FakeN2N())
    with pytest.raises(ValueError, match="rollouts_per_update=0"):
        N2NAgent("N2NPolicy", FakeN2N(), rollouts_per_update=0)
    with pytest.raises(ValueError, match="baseline_decay=1.0"):
        N2NConfig(baseline_decay=1.0)
    with pytest.raises(ValueError, match="n_envs=1"):
        N2NAgent("N2NPolicy", make_vec_env(FakeN2N, n_envs=2))
    with pytest.raises(ValueError, match="Dict with keys"):
        N2NAgent("N2NPolicy", gym.make("CartPole-v1"))


class CountingCallback(BaseCallback):
    def __init__(self, stop_after: int | None = None):
        super().__init__()
        self.stop_after, self.episodes, self.rollouts, self.compressions = stop_after, 0, 0, []

    def _on_rollout_start(self) -> None:
        self.rollouts += 1

    def _on_step(self) -> bool:
        assert set(self.locals) >= {"new_obs", "rewards", "dones", "infos"}
        for done, info in zip(self.locals["dones"], self.locals["infos"]):
            if done:
                self.episodes += 1
                self.compressions.append(info["compression"])
        return self.stop_after is None or self.n_calls < self.stop_after


@pytest.mark.filterwarnings("ignore:rich is experimental")  # SB3's progress bar
def test_sb3_callbacks_see_each_step_and_can_stop_learning(tmp_path):
    env = make_vec_env(FakeN2N, n_envs=1, seed=0)
    agent = N2NAgent("N2NPolicy", env, seed=0, tensorboard_log=str(tmp_path))
    counting = CountingCallback()
    agent.learn(120, callback=[counting], tb_log_name="run", progress_bar=True)
    assert counting.n_calls == 120 == agent.num_timesteps
    assert counting.episodes == len(agent.ep_info_buffer) > 10 and len(counting.compressions) == counting.episodes
    # An update per 5 episodes, the last on fewer; a last rollout may end the budget with no episode.
    assert agent._n_updates == -(-counting.episodes // 5) <= counting.rollouts <= agent._n_updates + 1
    assert list((tmp_path / "run_1").glob("events.out.tfevents.*"))
    stopping = CountingCallback(stop_after=37)
    agent.learn(1000, callback=stopping)
    assert stopping.n_calls == 37 == agent.num_timesteps


class ActionLog(BaseCallback):
    def __init__(self):
        super().__init__()
        self.actions = ""

    def _on_step(self) -> bool:
        self.actions += "".join(str(int(a)) for a in self.locals["actions"])
        return True


# The first 120 actions of seeded searches on FakeN2N, recorded before N2NAgent, RandomSearch and
# AgingEvolution became SB3 BaseAlgorithms (the N2N run spans three REINFORCE updates).
PINNED_ACTIONS = {
    "n2n": "110002010020111011111100011200000121101001200000000101100000001110"
           "100002110001200111100002122110000111011100121000122001",
    "evolution": "011100110020010111001121100100001011211102111111100100000010101211"
                 "002011111010201010001100101000110110022010001011002111",
    "random_search": "100012100112201010010100201111011121000001111111102100122000",
}  # fmt: skip


@pytest.mark.parametrize("algo", sorted(PINNED_ACTIONS))
def test_seeded_searches_repeat_the_pinned_episodes(algo):
    log = ActionLog()
    if algo == "n2n":
        N2NAgent("N2NPolicy", FakeN2N(), seed=0, **FAST).learn(120, callback=log)
    elif algo == "evolution":
        model = AgingEvolution("EvolutionPolicy", FakeN2N(), seed=1, population_size=6, sample_size=3)
        model.learn(120, callback=[log, StopTrainingOnMaxEpisodes(40)])
    else:
        RandomSearch("UniformPolicy", FakeN2N(), seed=2).learn(60, callback=log)
    assert log.actions == PINNED_ACTIONS[algo]


class LoggedClimb(HillClimbing):
    """Hill climbing that logs each episode: (genotype played, reward, the current student's genotype before
    it, or None at a start)."""

    def _setup_model(self) -> None:
        super()._setup_model()
        self.log = []

    def _episode_end(self, reward, info):
        current = None if self.current is None else dict(self.current["genotype"])
        self.log.append((dict(self._genotype), reward, current))
        super()._episode_end(reward, info)


def test_hill_climbing_plays_every_neighbour_then_moves_to_the_best_or_restarts():
    climb = LoggedClimb("HillClimbingPolicy", FakeN2N(), seed=3)
    climb.learn(10_000, callback=StopTrainingOnMaxEpisodes(150))
    segments = []  # (the current student, the episodes played from it)
    for genotype, reward, current in climb.log:
        if segments and segments[-1][0] == current:
            segments[-1][1].append((genotype, reward))
        else:
            segments.append((current, [(genotype, reward)]))
    reward_of = {}
    checked = {"moves": 0, "restarts": 0}
    for (current, played), (after, _) in zip(segments, segments[1:]):
        if current is None:  # a random start, then a climb from it
            assert len(played) == 1 and after == played[0][0]
        else:
            # The current student's neighbours: each differs from it, none is played twice.
            assert all(any(g.get(k) != v for k, v in current.items()) for g, _ in played)
            assert len({json.dumps(sorted(g.items())) for g, _ in played}) == len(played)
            best = max(played, key=lambda p: p[1])  # max keeps the first of equal rewards
            if best[1] > reward_of[json.dumps(sorted(current.items()))]:
                assert after == best[0]  # moved to the best neighbour
                checked["moves"] += 1
            else:
                assert after is None  # a local optimum: restart
                checked["restarts"] += 1
        for genotype, reward in played:
            reward_of[json.dumps(sorted(genotype.items()))] = reward
    assert checked["moves"] >= 2 and checked["restarts"] >= 1
    # FakeN2N's reward counts the layers treated right: the climb finds its optimum.
    assert max(r for _, r, _ in climb.log) == 1.0


def test_hill_climbing_is_seeded_and_first_improvement_moves_at_once():
    logs = []
    for seed in (5, 5, 6):
        climb = LoggedClimb("HillClimbingPolicy", FakeN2N(), seed=seed)
        climb.learn(10_000, callback=StopTrainingOnMaxEpisodes(40))
        logs.append([(sorted(g.items()), r) for g, r, _ in climb.log])
    assert logs[0] == logs[1] != logs[2]
    first = LoggedClimb("HillClimbingPolicy", FakeN2N(), seed=5, first_improvement=True)
    first.learn(10_000, callback=StopTrainingOnMaxEpisodes(60))
    for (g, r, current), (_, _, after) in zip(first.log[1:], first.log[2:]):
        start = next(x for x in first.log if x[0] == current) if current is not None else None
        if start is not None and r > start[1]:
            assert after == g  # the first improving neighbour becomes the current student
    with pytest.raises(ValueError, match="first_improvement='yes'"):
        HillClimbing("HillClimbingPolicy", FakeN2N(), first_improvement="yes")
