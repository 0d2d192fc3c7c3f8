"""InterferenceCartPole-v0, InterferenceAtari-v0 and the ContextDrift schedules behind them."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence

import kd_envs  # noqa: F401  (registers the environments)
from kd_envs.envs import (
    CARTPOLE_CONFLICTING_CONTEXT_NAMES,
    CARTPOLE_CONFLICTING_CONTEXTS,
    CARTPOLE_CONTEXT_NAMES,
    CARTPOLE_CONTEXTS,
    InterferenceCartPoleEnv,
)
from kd_envs.wrappers import ContextDrift, DriftSchedule

STANDARD = dict(CARTPOLE_CONTEXTS[0])


def drift_layer(env: gym.Env) -> ContextDrift:
    """The ContextDrift inside the wrappers that gym.make adds."""
    while not isinstance(env, ContextDrift):
        env = env.env
    return env


def cartpole(**kwargs) -> gym.Env:
    return gym.make("InterferenceCartPole-v0", **kwargs)


def rollout(env: gym.Env, actions, seed: int = 0) -> np.ndarray:
    """Observations of one episode from reset(seed) under a fixed action sequence, up to its end."""
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for action in actions:
        obs, _, terminated, truncated, _ = env.step(int(action))
        out.append(obs)
        if terminated or truncated:
            break
    return np.array(out)


def visit(env: gym.Env, episodes: int, steps: int = 3, seed: int = 0) -> list[dict]:
    """The reset info of each of ``episodes`` episodes of ``steps`` steps; only the first reset is seeded."""
    infos = []
    for episode in range(episodes):
        _, info = env.reset(seed=seed if episode == 0 else None)
        infos.append(info)
        for _ in range(steps):
            _, _, terminated, truncated, step_info = env.step(0)
            assert (step_info["context"], step_info["phase"]) == (info["context"], info["phase"])
            if terminated or truncated:
                break
    return infos


# -- CartPole physics ------------------------------------------------------------------------------
ACTIONS = np.random.default_rng(0).integers(0, 2, size=60)


def test_presets():
    assert CARTPOLE_CONTEXT_NAMES == ("standard", "long_heavy_pole", "strong_gravity_weak_push")
    assert [dict(c) for c in CARTPOLE_CONTEXTS] == [
        {"gravity": 9.8, "masscart": 1.0, "masspole": 0.1, "length": 0.5, "force_mag": 10.0, "push_direction": 1.0},
        {"gravity": 9.8, "masscart": 1.0, "masspole": 0.5, "length": 1.0, "force_mag": 10.0, "push_direction": 1.0},
        {"gravity": 15.0, "masscart": 1.0, "masspole": 0.1, "length": 0.5, "force_mag": 7.0, "push_direction": 1.0},
    ]
    assert CARTPOLE_CONFLICTING_CONTEXT_NAMES == ("standard", "reversed_push")
    assert [dict(c) for c in CARTPOLE_CONFLICTING_CONTEXTS] == [STANDARD, {**STANDARD, "push_direction": -1.0}]
    assert cartpole(contexts=None).get_wrapper_attr("contexts") == cartpole().get_wrapper_attr("contexts")


def test_reversed_push_needs_the_opposite_action_in_the_same_state():
    """The conflicting contexts: from the same start, flipped actions give the same trajectory."""
    standard = rollout(cartpole(contexts="conflicting"), ACTIONS)
    reversed_push = rollout(cartpole(contexts="conflicting", context=1), 1 - ACTIONS)
    assert len(standard) > 10
    np.testing.assert_array_equal(reversed_push, standard)
    assert np.abs(rollout(cartpole(contexts="conflicting", context=1), ACTIONS)[:10] - standard[:10]).max() > 1e-3


def test_visible_context_appends_the_one_hot_and_hidden_keeps_cartpole():
    env = cartpole(contexts="conflicting", drift="cyclic", phase_length=1, visible_context=True)
    assert env.observation_space.shape == (6,) and env.observation_space.dtype == np.float32
    for episode in range(4):
        obs, info = env.reset(seed=0 if episode == 0 else None)
        np.testing.assert_array_equal(obs[4:], np.eye(2, dtype=np.float32)[episode % 2])
        assert info["context"] == episode % 2
        obs, *_ = env.step(0)
        np.testing.assert_array_equal(obs[4:], np.eye(2, dtype=np.float32)[episode % 2])
    hidden = cartpole(contexts="conflicting", drift="cyclic", phase_length=1)
    assert hidden.observation_space.shape == (4,)
    visible = cartpole(visible_context=True)
    np.testing.assert_array_equal(rollout(visible, ACTIONS)[:, :4], rollout(cartpole(), ACTIONS))

    smooth = cartpole(drift="smooth", phase_unit="steps", phase_length=4, visible_context=True)
    smooth.reset(seed=0)
    for t in range(1, 6):
        obs, _, _, _, info = smooth.step(0)
        w = ((t - 1) % 4) / 4  # the step taken at t − 1 steps since the reset
        expected = np.zeros(3, np.float32)
        expected[info["context"]] += 1 - w
        expected[(info["context"] + 1) % 3] += w
        np.testing.assert_allclose(obs[4:], expected, rtol=0, atol=1e-7)


def test_standard_context_is_cartpole_v1():
    expected = rollout(gym.make("CartPole-v1"), ACTIONS)
    np.testing.assert_array_equal(rollout(cartpole(), ACTIONS), expected)


@pytest.mark.parametrize("name", ["gravity", "masscart", "masspole", "length", "force_mag"])
def test_each_parameter_changes_the_trajectory(name):
    standard = rollout(cartpole(), ACTIONS)
    changed = cartpole(contexts=[{name: STANDARD[name] * 1.5}])
    assert changed.unwrapped.context_params == {**STANDARD, name: STANDARD[name] * 1.5}
    other = rollout(changed, ACTIONS)
    n = min(len(standard), len(other))
    assert n > 10
    assert np.abs(other[:n] - standard[:n]).max() > 1e-4, f"{name} does not reach the dynamics"


def test_set_context_recomputes_cached_masses():
    env = InterferenceCartPoleEnv()
    env.set_context({"masspole": 0.3, "length": 0.8, "masscart": 2.0})
    assert env.total_mass == pytest.approx(2.3)
    assert env.polemass_length == pytest.approx(0.24)
    env.set_context({"length": 2.0})  # a subset keeps the other parameters
    assert env.polemass_length == pytest.approx(0.6)
    assert env.context_params == {**STANDARD, "masspole": 0.3, "length": 2.0, "masscart": 2.0}


def test_set_context_sets_nothing_unless_all_valid():
    env = InterferenceCartPoleEnv()
    with pytest.raises(ValueError, match=r"masscart=nan"):
        env.set_context({"gravity": 20.0, "masscart": float("nan")})
    assert env.context_params == STANDARD


# -- schedules -------------------------------------------------------------------------------------
def test_cyclic_visits_contexts_in_order():
    env = cartpole(drift="cyclic", phase_length=2)
    infos = visit(env, 8)
    assert [i["context"] for i in infos] == [0, 0, 1, 1, 2, 2, 0, 0]
    assert [i["phase"] for i in infos] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [i["context_params"] for i in infos[::2]] == [dict(CARTPOLE_CONTEXTS[k]) for k in (0, 1, 2, 0)]
    assert env.unwrapped.context_params == STANDARD  # the physics follow the schedule
    drift = drift_layer(env)
    assert (drift.context, drift.phase, drift.n_contexts, drift.context_params) == (0, 3, 3, STANDARD)


def test_abrupt_switches_to_another_context_reproducibly():
    def contexts(seed, phase_length=1, episodes=30):
        return [i["context"] for i in visit(cartpole(drift="abrupt", phase_length=phase_length), episodes, seed=seed)]

    first = contexts(seed=1)
    assert all(a != b for a, b in zip(first, first[1:]))
    assert set(first) == {0, 1, 2}
    assert contexts(seed=1) == first
    assert contexts(seed=2) != first  # 29 binary draws: equal with probability 2**-29

    longer = contexts(seed=1, phase_length=3, episodes=15)
    assert [longer[k] for k in (0, 1, 2)] == [0, 0, 0]
    assert all(len(set(longer[k : k + 3])) == 1 for k in (0, 3, 6, 9, 12))
    assert all(longer[k] != longer[k - 1] for k in (3, 6, 9, 12))


def test_first_unseeded_reset_seeds_the_schedule_randomly():
    def contexts():
        env = cartpole(drift="abrupt", phase_length=1)
        return [env.reset()[1]["context"] for _ in range(30)]

    assert contexts() != contexts()


def test_phase_in_steps_switches_at_the_first_reset_after_the_phase():
    env = cartpole(drift="cyclic", phase_length=5, phase_unit="steps")
    seen = []
    for episode, steps in enumerate([3, 3, 7, 1, 4]):  # phase step counts: 3, 6 | 7 | 1, 5 |
        _, info = env.reset(seed=0 if episode == 0 else None)
        seen.append(info["context"])
        for _ in range(steps):
            env.step(episode % 2)
    assert seen == [0, 0, 1, 2, 2]
    assert env.reset()[1]["context"] == 0


def smooth_expected(t: int, phase_length: int, c0: int = 0) -> dict:
    p = t / phase_length
    i = int(np.floor(p))
    w = p - i
    a, b = CARTPOLE_CONTEXTS[(c0 + i) % 3], CARTPOLE_CONTEXTS[(c0 + i + 1) % 3]
    return {name: (1 - w) * a[name] + w * b[name] for name in a}


@pytest.mark.parametrize("c0", [0, 1])
def test_smooth_interpolates_every_step(c0):
    env = cartpole(drift="smooth", phase_unit="steps", phase_length=10, context=c0)
    reference = InterferenceCartPoleEnv()  # steps with the reported parameters by hand
    _, info = env.reset(seed=3)
    reference.reset(seed=3)
    assert info["context_params"] == pytest.approx(smooth_expected(0, 10, c0))
    masspoles, episodes = [], 1
    for t in range(28):
        obs, _, terminated, truncated, info = env.step(t % 2)
        reference.set_context(info["context_params"])
        expected_obs = reference.step(t % 2)[0]
        np.testing.assert_array_equal(obs, expected_obs)  # the reported parameters governed this step
        if episodes == 1:
            masspoles.append(info["context_params"]["masspole"])
        assert info["context_params"] == pytest.approx(smooth_expected(t, 10, c0))
        assert (info["phase"], info["context"]) == (t // 10, (c0 + t // 10) % 3)
        if terminated or truncated:
            obs, info = env.reset()  # continues the drift
            episodes += 1
            assert info["context_params"] == pytest.approx(smooth_expected(t + 1, 10, c0))
            reference.reset()
            reference.state = env.unwrapped.state.copy()
    assert len(set(masspoles)) > 5, "the parameters must move inside an episode"
    assert env.reset(seed=3)[1]["context_params"] == pytest.approx(smooth_expected(0, 10, c0))


def test_reset_with_seed_restarts_the_schedule():
    env = cartpole(drift="abrupt", phase_length=1)
    first = [i["context"] for i in visit(env, 10, seed=4)]
    assert drift_layer(env).phase == 9
    _, info = env.reset(seed=4)
    assert (info["context"], info["phase"], drift_layer(env).episodes, drift_layer(env).total_steps) == (0, 0, 1, 0)
    assert [i["context"] for i in visit(env, 10, seed=4)] == first


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"drift": "abrupt", "phase_length": 1},
        {"drift": "cyclic", "phase_length": 15, "phase_unit": "steps"},
        {"drift": "smooth", "phase_length": 7, "phase_unit": "steps"},
    ],
)
def test_same_seed_same_episodes(kwargs):
    def run():
        env = cartpole(**kwargs)
        env.action_space.seed(7)
        out = []
        for episode in range(5):
            obs, info = env.reset(seed=7 if episode == 0 else None)
            out.append((obs, info))
            for _ in range(40):
                step = env.step(env.action_space.sample())
                out.append(step)
                if step[2] or step[3]:
                    break
        return out

    first, second = run(), run()
    assert len(first) == len(second)
    for u, v in zip(first, second):
        assert data_equivalence(u, v, exact=True), (u, v)
    if kwargs:
        assert len({str(item[-1]["context_params"]) for item in first}) > 1, "the context must drift in the run"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"drift": "sudden"}, r"kind='sudden'.*'none', 'abrupt', 'cyclic', 'smooth'"),
        ({"drift": "cyclic", "phase_length": 0}, r"phase_length=0; expected an integer >= 1"),
        ({"phase_unit": "hours"}, r"phase_unit='hours'"),
        ({"drift": "smooth"}, r"phase_unit='episodes' with kind='smooth'; expected phase_unit='steps'"),
        ({"context": 3}, r"context=3; expected an index in \[0, 3\), as there are 3 contexts"),
        ({"contexts": []}, r"contexts=\[\]"),
        ({"drift": "cyclic", "contexts": [{}]}, r"kind='cyclic' with 1 context; expected at least 2"),
        ({"contexts": [{"gravty": 9.8}]}, r"unknown context parameter\(s\) \['gravty'\].*'gravity'"),
        ({"contexts": [{}, {"masspole": -0.1}]}, r"masspole=-0.1; expected a finite number > 0"),
        ({"contexts": "opposite"}, r"contexts='opposite'; expected a preset name \('physics', 'conflicting'\)"),
        ({"contexts": [{"push_direction": -2}]}, r"push_direction=-2; expected a number in \[-1, 1\]"),
        ({"visible_context": "yes"}, r"visible_context='yes'; expected True or False"),
        ({"contexts": 5}, r"contexts=5; expected a preset name \('physics', 'conflicting'\) or a list of dicts"),
        ({"contexts": [{}, 5]}, r"contexts\[1\]=5; expected a non-empty mapping"),
    ],
)
def test_cartpole_bad_kwargs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cartpole(**kwargs)


def test_drift_needs_set_context():
    with pytest.raises(TypeError, match=r"CartPoleEnv has no set_context"):
        ContextDrift(gym.make("CartPole-v1"), [{}], DriftSchedule())


# -- Atari -----------------------------------------------------------------------------------------
def atari(**kwargs) -> gym.Env:
    return gym.make("InterferenceAtari-v0", **kwargs)


def atari_rollout(env: gym.Env, steps: int = 60) -> np.ndarray:
    obs, _ = env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, env.action_space.n, size=steps)
    return np.array([obs] + [env.step(int(a))[0] for a in actions])


def test_atari_observation_and_default_contexts():
    env = atari()
    obs, info = env.reset(seed=0)
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert drift_layer(env).contexts == (
        {"mode": 0, "difficulty": 0},
        {"mode": 4, "difficulty": 0},
        {"mode": 0, "difficulty": 1},
    )  # Breakout's modes are 0, 4, ..., 44 and its difficulties 0, 1
    assert info["context_params"] == {"mode": 0, "difficulty": 0}


def test_atari_context_reaches_the_game():
    rams, observations = {}, {}
    for k in (0, 1, 2):
        env = atari(context=k)
        observations[k] = atari_rollout(env)
        env.reset(seed=0)
        rams[k] = env.unwrapped.ale.getRAM().copy()
        assert env.unwrapped.context_params == drift_layer(env).contexts[k]
    assert (rams[1] != rams[0]).any()  # the mode is in the game's RAM
    assert (observations[2] != observations[0]).any()  # difficulty 1 changes what is on screen

    # Through the schedule, at resets without a seed: the RAM takes each context's signature.
    env = atari(drift="cyclic", phase_length=1)
    for episode, k in enumerate([0, 1, 2, 0, 1]):
        _, info = env.reset(seed=0 if episode == 0 else None)
        assert (info["context"], info["phase"], info["context_params"]) == (k, episode, drift_layer(env).contexts[k])
        for _ in range(5):
            env.step(1)
        ram = env.unwrapped.ale.getRAM()
        for other in {0, 1, 2} - {k}:
            signature = rams[k] != rams[other]
            np.testing.assert_array_equal(ram[signature], rams[k][signature])


def test_atari_same_seed_same_episodes():
    def run():
        env = atari(drift="abrupt", phase_length=1)
        out = []
        for episode in range(3):
            obs, info = env.reset(seed=5 if episode == 0 else None)
            out.append((obs, info))
            out += [env.step(int(a)) for a in np.random.default_rng(episode).integers(0, 4, size=20)]
        return out

    for u, v in zip(run(), run(), strict=True):
        assert data_equivalence(u, v, exact=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"contexts": [{"mode": 3}]}, r"mode=3; Breakout offers modes \[0, 4, 8"),
        ({"contexts": [{"difficulty": 2}]}, r"difficulty=2; Breakout offers difficulties \[0, 1\]"),
        ({"drift": "smooth", "phase_unit": "steps"}, r"kind='smooth'.*only changes at reset"),
        ({"game": "Breakot"}, r"game='Breakot'; did you mean \['Breakout'\]"),
        ({"game": "Tetris", "drift": "cyclic"}, r"drift='cyclic' with game='Tetris', which offers one mode"),
        # Wrong types name the kwarg, its value and what is allowed (a bool is not an int, a string not a number).
        ({"frame_skip": "4"}, r"frame_skip='4'; expected a positive integer"),
        ({"frame_skip": True}, r"frame_skip=True; expected a positive integer"),
        ({"screen_size": 84.0}, r"screen_size=84.0; expected a positive integer"),
        ({"frame_stack": "4"}, r"frame_stack='4'; expected a positive integer"),
        ({"noop_max": None}, r"noop_max=None; expected an integer >= 0"),
        ({"terminal_on_life_loss": "no"}, r"terminal_on_life_loss='no'; expected True or False"),
        ({"repeat_action_probability": "0.25"}, r"repeat_action_probability='0.25'; expected a number in \[0, 1\]"),
        ({"repeat_action_probability": 2.0}, r"repeat_action_probability=2.0; expected a number in \[0, 1\]"),
        ({"contexts": 5}, r"contexts=5; expected None or a list of"),
        ({"game": None}, r"game=None; expected an ALE game"),
    ],
)
def test_atari_bad_kwargs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        atari(**kwargs)


@pytest.mark.parametrize("action", [-1, 4, 1.5, 1 + 2j, np.array([1, 2]), True, "1"])
def test_atari_action_outside_the_space_is_refused(action):
    """Breakout's minimal set has 4 actions; -1 must not wrap around to the last (LEFT), nor 4 fail by IndexError."""
    env = atari()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"InterferenceAtari-v0: action .* expected one integer in Discrete\(4\)"):
        env.step(action)
    for ok in (0, 3, np.int64(2), np.array(1), np.array([2])):
        env.step(ok)


def test_atari_step_before_reset_is_refused_by_the_raw_env():
    from kd_envs.envs import make_interference_atari

    for env in (make_interference_atari(), make_interference_atari().unwrapped):
        with pytest.raises(RuntimeError, match=r"InterferenceAtari-v0: call reset\(\) before step\(\)"):
            env.step(0)
    env.reset(seed=0)
    env.step(0)


# -- MinAtar (optional extra) ----------------------------------------------------------------------
@pytest.mark.parametrize("game", ["Breakout", "SpaceInvaders"])
def test_minatar_channels_first_and_seeding(game):
    """The checkers run in test_env_checkers; here, the layout and one seed giving one episode."""
    pytest.importorskip("minatar")
    env = gym.make(f"MinAtar-{game}-v1")
    space = env.observation_space
    assert space.dtype == np.uint8 and space.shape[1:] == (10, 10) and space.high.max() == 1
    obs, _ = env.reset(seed=0)
    grid = env.unwrapped.game.state()  # MinAtar's own (10, 10, C) bool grid
    np.testing.assert_array_equal(obs, np.moveaxis(grid, -1, 0).astype(np.uint8))

    def episode(seed):
        env.reset(seed=seed)
        out = []
        for t in range(200):
            obs, reward, terminated, truncated, _ = env.step(t % env.action_space.n)
            out.append((obs.copy(), reward))
            if terminated or truncated:
                break
        return out

    first, second = episode(5), episode(5)
    assert len(first) == len(second) and all(np.array_equal(a, b) and r == s for (a, r), (b, s) in zip(first, second))


def test_minatar_bad_game_is_named():
    pytest.importorskip("minatar")
    from kd_envs.wrappers.minatar import make_minatar

    with pytest.raises(ValueError, match=r"game='Pong'; expected one of \('Breakout'"):
        make_minatar("Pong")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sticky_action_prob": "0.1"}, r"sticky_action_prob='0.1'; expected a number in \[0, 1\]"),
        ({"sticky_action_prob": 1.5}, r"sticky_action_prob=1.5; expected a number in \[0, 1\]"),
        ({"difficulty_ramping": "no"}, r"difficulty_ramping='no'; expected True or False"),
    ],
)
def test_minatar_bad_kwargs(kwargs, match):
    pytest.importorskip("minatar")
    with pytest.raises(ValueError, match=match):
        gym.make("MinAtar-Breakout-v1", **kwargs)
