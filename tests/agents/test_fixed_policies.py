import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.common.evaluation import fixed_policy_entry, run_episode
from agents.temperature.specs import FIXED_POLICIES, fixed_policy
from kd_envs.envs.temperature_kd import action_to_temperature

OBS = np.zeros((32, 3), dtype=np.float32)


def temperatures(action: np.ndarray, action_scale: float) -> torch.Tensor:
    return action_to_temperature(torch.as_tensor(action), action_scale)


@pytest.mark.parametrize("action_scale", [6.0, 3.0])
@pytest.mark.parametrize(("name", "temperature"), [("constant_t1", 1.0), ("constant_t4", 4.0), ("no_kd", 1.0)])
def test_constant_policies_map_back_to_their_temperature(name, temperature, action_scale):
    policy = fixed_policy(name, action_scale=action_scale)
    action, state = policy.predict(OBS, state="kept")
    assert state == "kept"
    assert action.shape == (32,) and action.dtype == np.float32
    assert np.all(np.abs(action) <= 1.0)
    torch.testing.assert_close(temperatures(action, action_scale), torch.full((32,), temperature), rtol=1e-6, atol=0)


def test_constant_policy_follows_the_observation_batch_shape():
    action, _ = fixed_policy("constant_t4").predict(np.zeros((4, 32, 3), dtype=np.float32))
    assert action.shape == (4, 32)
    torch.testing.assert_close(temperatures(action, 6.0), torch.full((4, 32), 4.0), rtol=1e-6, atol=0)


def draws(policy, seed: int, n: int = 10) -> np.ndarray:
    policy.seed(seed)
    return np.stack([policy.predict(OBS)[0] for _ in range(n)])


def test_random_t_is_reproducible_per_seed_and_stays_in_range():
    policy = fixed_policy("random_t")
    first = draws(policy, 5)
    np.random.seed(0)  # the policy must not read NumPy's global state
    np.testing.assert_array_equal(draws(policy, 5), first)
    assert not np.array_equal(draws(policy, 6), first)
    # Consecutive calls draw fresh temperatures.
    assert not np.array_equal(first[0], first[1])
    t = temperatures(first, policy.action_scale).numpy()
    tolerance = 1e-5
    assert t.min() >= policy.low - tolerance and t.max() <= policy.high + tolerance
    # 320 uniform draws over [0.5, 9.5] cover most of the range.
    assert t.min() < 2.0 and t.max() > 8.0


def test_env_overrides():
    assert fixed_policy("no_kd").env_overrides == {"ce_weight": 1.0, "kd_weight": 0.0}
    for name in ("constant_t1", "constant_t4", "random_t"):
        assert fixed_policy(name).env_overrides == {}


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="constant_t3") as error:
        fixed_policy("constant_t3")
    for name in FIXED_POLICIES:
        assert name in str(error.value)


def test_no_kd_trains_with_cross_entropy_alone(tiny_json_kwargs, fast_bootstrap):
    # The user's weights are replaced by the policy's overrides, and the entry records what was run.
    kwargs = dict(tiny_json_kwargs, ce_weight=0.3, kd_weight=0.7)
    entry = fixed_policy_entry("no_kd", env_kwargs=kwargs, seeds=(1000,), tag="test", progress=False)
    assert entry["env_kwargs"] == dict(tiny_json_kwargs, ce_weight=1.0, kd_weight=0.0)
    no_kd = entry["runs"][0]["episodes"][0]
    assert no_kd["loss_kd"] > 0  # still reported, but weighted by zero

    # With the KD term weighted by zero the temperature cannot matter: T = 4 trains the same student.
    env = gym.make("TemperatureKD-v0", **entry["env_kwargs"])
    at_t4 = run_episode(env, fixed_policy("constant_t4"), 1000)
    assert at_t4["temperature_mean"] == pytest.approx(4.0)
    for key in ("return", "loss_ce", "student_test_accuracy", "student_reward_set_accuracy"):
        assert at_t4[key] == no_kd[key], key
    assert at_t4["loss_kd"] != no_kd["loss_kd"]

    # Whereas with KD weighted in, the two temperatures train different students.
    env = gym.make("TemperatureKD-v0", **tiny_json_kwargs)
    with_kd = {name: run_episode(env, fixed_policy(name), 1000)["loss_ce"] for name in ("constant_t1", "constant_t4")}
    assert with_kd["constant_t1"] != with_kd["constant_t4"]
