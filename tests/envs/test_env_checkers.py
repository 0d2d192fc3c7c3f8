"""Every registered KD-Gym id through Gymnasium's and SB3's checkers and a determinism rollout.

As Gymnasium's own ``tests/envs/test_envs.py``: every warning is recorded, and any that is not on the
allow-list below fails the test. A new warning is either a defect to fix in the env or a deliberate
design to add here, with its reason.
"""

import re
import warnings
from collections.abc import Callable
from importlib.util import find_spec

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import kd_envs  # noqa: F401  (registers the environments)

SB3_UNCONVENTIONAL_SHAPE = (
    "Your observation {key} has an unconventional shape (neither an image, nor a 1D vector). We recommend you "
    "to flatten the observation to have only a 1D vector or use a custom policy to properly process the data."
)

# env id -> {warning message (as Gymnasium's logger writes it, less its colour codes): why it is allowed}.
ALLOWED_WARNINGS: dict[str, dict[str, str]] = {
    "TemperatureKD-v0": {
        SB3_UNCONVENTIONAL_SHAPE.format(key=""): "one row per instance of the batch, (batch_size, 3): the "
        "per-instance policies read it row by row, never flattened",
    },
    "N2NCompress-v0": {
        SB3_UNCONVENTIONAL_SHAPE.format(key="layers"): "one descriptor row per teacher layer, (layers, 8): N2N's "
        "policy runs an LSTM over the rows",
    },
    "InterferenceCartPole-v0": {
        "A Box observation space minimum value is -infinity. This is probably too low.": "CartPole-v1's "
        "velocities are unbounded (Gymnasium's own test allows this warning for CartPole)",
        "A Box observation space maximum value is infinity. This is probably too high.": "the same bound, above",
    },
    "InterferenceAtari-v0": {},
    **dict.fromkeys(
        ("MinAtar-Breakout-v1", "MinAtar-SpaceInvaders-v1"),
        {
            "It seems that your observation space  is an image but the upper and lower bounds are not in [0, 255]. "
            "Because the CNN policy normalize automatically the observation you may encounter issue if the values "
            "are not in that range.": "MinAtar's grids are 0/1 by design; MinAtarCNN reads them, not NatureCNN",
            "The minimal resolution for an image is 36x36 for the default `CnnPolicy`. You might need to use a "
            "custom features extractor cf. https://stable-baselines3.readthedocs.io/en/master/guide/"
            "custom_policy.html": "MinAtar's grids are 10x10 by design; MinAtarCNN reads them, not NatureCNN",
        },
    ),
}
# Only when the checker is given the wrapper an entry point returns (ContextDrift, ChannelsFirst) on purpose.
WRAPPER_WARNING = re.compile(r"The environment \(.*\) is different from the unwrapped version \(.*\)\. .*", re.S)

# (id, kwargs over the id's small base kwargs): every registered id at least once, each drift and stage mode.
CASES = [
    ("TemperatureKD-v0", {}),
    ("TemperatureKD-v0", {"exploration": "entropy_mixup_authors", "epochs": 3, "mixup_interval": 1}),
    ("TemperatureKD-v0", {"observation": "extended", "action": "temperature_weight"}),
    ("N2NCompress-v0", {}),
    ("N2NCompress-v0", {"stages": "removal"}),
    ("N2NCompress-v0", {"stages": "shrink", "removed_layers": [2]}),
    ("N2NCompress-v0", {"reward": "budget", "parameter_budget": 0.3}),
    ("N2NCompress-v0", {"reward": "log_params"}),
    ("N2NCompress-v0", {"reward": "constrained", "parameter_budget": 0.3}),
    ("InterferenceCartPole-v0", {}),
    ("InterferenceCartPole-v0", {"drift": "cyclic", "phase_length": 1}),
    ("InterferenceCartPole-v0", {"drift": "abrupt", "phase_length": 1, "contexts": "conflicting"}),
    ("InterferenceCartPole-v0", {"drift": "smooth", "phase_unit": "steps", "phase_length": 5}),
    ("InterferenceCartPole-v0", {"drift": "smooth", "phase_unit": "steps", "phase_length": 5, "visible_context": True}),
    (
        "InterferenceCartPole-v0",
        {"drift": "cyclic", "phase_length": 1, "contexts": "conflicting", "visible_context": True},
    ),
    ("InterferenceAtari-v0", {"drift": "cyclic", "phase_length": 1}),
    ("MinAtar-Breakout-v1", {}),
    ("MinAtar-SpaceInvaders-v1", {}),
]
CASE_IDS = [f"{env_id}-{'-'.join(f'{k}={v}' for k, v in kwargs.items()) or 'defaults'}" for env_id, kwargs in CASES]
# What gym.make puts around the env its entry point returns.
MAKE_WRAPPERS = (TimeLimit, OrderEnforcing, PassiveEnvChecker)
SLOW_IDS = {"InterferenceAtari-v0"}  # Gymnasium's checker resets ALE some twenty times: about 6 s


def kd_gym_ids() -> list[str]:
    return sorted(s.id for s in gym.registry.values() if str(s.entry_point).startswith("kd_envs."))


def case_params(slow_ids=frozenset()):
    return [
        pytest.param(env_id, kwargs, id=case_id, marks=[pytest.mark.slow] if env_id in slow_ids else [])
        for (env_id, kwargs), case_id in zip(CASES, CASE_IDS, strict=True)
    ]


@pytest.fixture(scope="module")
def base_kwargs(tiny_kwargs, tiny_n2n_kwargs):
    # N2N keeps student results in memory only, so that both rollouts of the determinism test really train.
    return {"TemperatureKD-v0": tiny_kwargs, "N2NCompress-v0": dict(tiny_n2n_kwargs, cache_students=False)}


def make_kwargs(env_id: str, kwargs: dict, base_kwargs: dict) -> dict:
    if env_id.startswith("MinAtar"):
        pytest.importorskip("minatar")
    return {**base_kwargs.get(env_id, {}), **kwargs}


def message_of(warning: warnings.WarningMessage) -> str:
    """The text of a warning, less the colour codes and "WARN: " of Gymnasium's logger."""
    text = str(warning.message)
    return re.sub(r"^\x1b\[\d+mWARN: (.*)\x1b\[0m$", r"\1", text, flags=re.S)


def assert_only_allowed_warnings(env_id: str, run: Callable[[], None], wrapper: bool = False) -> None:
    """Run ``run`` recording every warning; fail on any not allowed for ``env_id``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    unexpected = [
        f"{w.category.__name__} ({w.filename}:{w.lineno}): {message_of(w)}"
        for w in caught
        if message_of(w) not in ALLOWED_WARNINGS[env_id] and not (wrapper and WRAPPER_WARNING.fullmatch(message_of(w)))
    ]
    assert not unexpected, f"{env_id}: warnings not on the allow-list:\n" + "\n".join(unexpected)


def test_every_registered_id_has_checker_cases():
    assert sorted({env_id for env_id, _ in CASES}) == kd_gym_ids()
    assert sorted(ALLOWED_WARNINGS) == kd_gym_ids()


# MinAtar's own env (minatar.gym.BaseEnv) seeds its game in reset but never calls super().reset(seed=...),
# so Gymnasium's seeding check cannot pass on it; ChannelsFirst's seeding is tested in test_interference_envs.
MINATAR_SEEDING = pytest.mark.xfail(
    raises=AssertionError, strict=True, reason="MinAtar's BaseEnv.reset does not call super().reset(seed=seed)"
)


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [p if not p.values[0].startswith("MinAtar") else pytest.param(*p.values, id=p.id, marks=MINATAR_SEEDING)
     for p in case_params(SLOW_IDS)],
)  # fmt: skip
def test_gymnasium_checker(env_id, kwargs, base_kwargs):
    """``check_env`` on the unwrapped env and, where the entry point wraps it, on that wrapper too."""
    made = gym.make(env_id, disable_env_checker=True, **make_kwargs(env_id, kwargs, base_kwargs))
    # CartPole's renderer needs pygame, which is not a dependency (gymnasium[classic-control]).
    skip_render = env_id == "InterferenceCartPole-v0" and find_spec("pygame") is None
    assert_only_allowed_warnings(env_id, lambda: gym_check_env(made.unwrapped, skip_render_check=skip_render))
    env = made
    while isinstance(env, MAKE_WRAPPERS):  # down to what the entry point returned
        env = env.env
    if env is not env.unwrapped:  # rendering passes through the wrapper: checked above
        assert_only_allowed_warnings(env_id, lambda: gym_check_env(env, skip_render_check=True), wrapper=True)
    made.close()


@pytest.mark.parametrize(("env_id", "kwargs"), case_params())
def test_passive_checker_episode(env_id, kwargs, base_kwargs):
    """An episode through gym.make, whose PassiveEnvChecker looks at the first reset and step."""

    def episode():
        env = gym.make(env_id, **make_kwargs(env_id, kwargs, base_kwargs))
        assert env.spec.id == env_id
        env.action_space.seed(0)
        obs, _ = env.reset(seed=0)
        for _ in range(40):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs) and np.isfinite(reward)
            if terminated or truncated:
                obs, _ = env.reset()  # and one step into the next episode, unseeded
                env.step(env.action_space.sample())
                break
        env.close()

    assert_only_allowed_warnings(env_id, episode)


@pytest.mark.parametrize(("env_id", "kwargs"), case_params())
def test_sb3_checker(env_id, kwargs, base_kwargs):
    """SB3's ``check_env`` on the env gym.make gives, which is the one SB3 agents train on."""
    env = gym.make(env_id, **make_kwargs(env_id, kwargs, base_kwargs))
    assert_only_allowed_warnings(env_id, lambda: sb3_check_env(env, warn=True))
    env.close()


# Wall-clock measurements and cache bookkeeping may differ between two runs of the same episode.
TIMING_KEYS = {"train_seconds", "cached"}


def assert_same(u, v):
    if isinstance(u, dict):
        assert set(u) == set(v)
        for key in set(u) - TIMING_KEYS:
            assert_same(u[key], v[key])
    elif isinstance(u, np.ndarray):
        np.testing.assert_array_equal(u, v)
    else:
        assert u == v


@pytest.mark.parametrize("env_id", kd_gym_ids())
def test_determinism_rollout(env_id, base_kwargs):
    kwargs = make_kwargs(env_id, {}, base_kwargs)

    def run():
        env = gym.make(env_id, **kwargs)
        env.action_space.seed(0)
        obs, _ = env.reset(seed=42)
        out = [obs]
        for _ in range(10):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            out += [obs, reward, terminated, truncated, info]
            if terminated or truncated:
                break
        return out

    first, second = run(), run()
    assert len(first) > 1
    for u, v in zip(first, second, strict=True):
        assert_same(u, v)
