import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.nn import functional as F

import kd_envs  # noqa: F401  (registers the environments)
from kd_envs.envs.temperature_kd import (
    action_to_temperature,
    authors_purification,
    batch_observation,
    teacher_confidence,
    temperature_to_action,
)
from kd_envs.losses import kd_loss
from kd_envs.tasks.training import accuracy


def rollout(env, seed, actions_seed=123):
    env.action_space.seed(actions_seed)
    obs, info = env.reset(seed=seed)
    trace = [(obs.copy(), info)]
    while True:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        trace.append((obs.copy(), reward, terminated, truncated, info))
        if terminated or truncated:
            return trace


def assert_same_trace(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert len(x) == len(y)
        for u, v in zip(x, y):
            if isinstance(u, np.ndarray):
                np.testing.assert_array_equal(u, v)
            else:
                assert u == v


def test_spaces_and_episode_length(tiny_kwargs):
    env = gym.make("TemperatureKD-v0", **tiny_kwargs)
    assert env.observation_space == gym.spaces.Box(0, 1, (32, 3), np.float32)
    assert env.action_space == gym.spaces.Box(-1, 1, (32,), np.float32)
    trace = rollout(env, seed=0)
    assert len(trace) - 1 == 2 * (256 // 32)  # epochs x full batches
    obs = trace[0][0]
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    final = trace[-1][-1]
    for key in ("student_test_accuracy", "teacher_test_accuracy", "temperature_mean", "temperature_std"):
        assert key in final
    assert 0.0 <= final["student_test_accuracy"] <= 1.0
    assert 0.0 < final["temperature_min"] <= final["temperature_mean"] <= final["temperature_max"] < 10.0


def test_same_seed_same_episode_and_other_seed_differs(tiny_kwargs):
    a = rollout(gym.make("TemperatureKD-v0", **tiny_kwargs), seed=7)
    b = rollout(gym.make("TemperatureKD-v0", **tiny_kwargs), seed=7)
    assert_same_trace(a, b)
    c = rollout(gym.make("TemperatureKD-v0", **tiny_kwargs), seed=8)
    assert not np.array_equal(a[0][0], c[0][0])


def test_reset_does_not_touch_global_random_state(tiny_kwargs):
    env = gym.make("TemperatureKD-v0", **tiny_kwargs)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    env.reset(seed=3)
    env.step(env.action_space.sample())
    assert torch.equal(torch_state, torch.get_rng_state())
    assert np.array_equal(np_state[1], np.random.get_state()[1])


def test_observation_is_teacher_and_student_confidence_and_uncertainty():
    student_logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    teacher_logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]]))
    obs = batch_observation(student_logits, teacher_confidence(teacher_logits))
    # uncertainty = 1 - (top1 - top2): top2 is the second *largest* probability
    expected = np.array([[0.7, 0.5, 1 - (0.5 - 0.3)], [0.4, 0.8, 1 - (0.8 - 0.1)]], np.float32)
    np.testing.assert_allclose(obs, expected, atol=1e-6)


def test_action_temperature_map():
    a = torch.tensor([-1.0, 0.0, 1.0])
    t = action_to_temperature(a, 6.0)
    np.testing.assert_allclose(t.numpy(), [10 / (1 + math.exp(6)), 5.0, 10 / (1 + math.exp(-6))], rtol=1e-6)
    for temperature in (0.5, 1.0, 4.0, 9.0):
        a = temperature_to_action(temperature, 6.0)
        assert action_to_temperature(torch.tensor(a), 6.0).item() == pytest.approx(temperature, rel=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        temperature_to_action(10.0, 6.0)


def test_step_trains_with_the_papers_loss(tiny_kwargs):
    """One step equals one hand-made update: gamma*CE + alpha*KD(T_i) on the observed batch."""
    env = gym.make("TemperatureKD-v0", **tiny_kwargs).unwrapped
    env.reset(seed=11)
    student = env.student
    x, y = (t.clone() for t in env.batch_data())
    teacher_logits = env.batch_logits()[1].clone()
    reference = type(student)(64, 10, 8, 1)
    reference.load_state_dict(student.state_dict())
    optimizer = torch.optim.Adam(reference.parameters(), lr=env.options.student_lr)
    action = np.linspace(-1, 1, 32, dtype=np.float32)
    temperature = action_to_temperature(torch.as_tensor(action), env.options.action_scale)
    logits = reference(x)
    loss = 0.1 * F.cross_entropy(logits, y) + 0.9 * kd_loss(logits, teacher_logits, temperature)
    loss.backward()
    optimizer.step()
    env.step(action)
    for p, q in zip(student.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


def test_heldout_reward_is_scaled_accuracy_gain(tiny_kwargs):
    env = gym.make("TemperatureKD-v0", **tiny_kwargs).unwrapped
    env.reset(seed=5)
    assert len(env.reward_y) == 32 and torch.equal(env.reward_y, env.task.data.y_val[:32])  # held out, not test
    before = accuracy(env.student, env.reward_x, env.reward_y)
    _, reward, *_ = env.step(np.zeros(32, np.float32))
    after = accuracy(env.student, env.reward_x, env.reward_y)
    assert after != before  # the step moved the measure: the check below is not 0 == 0
    assert reward == pytest.approx((after - before) * 0.5)  # sigmoid(epoch 0 / n) = 1/2


def test_reward_interval_keeps_each_epochs_reward_sum(tiny_kwargs):
    # 8 batches per epoch. Measuring every 3 steps (and at each epoch's end) gives rewards only on those
    # steps, and every epoch's rewards sum to the same held-out gain as measuring every step.
    every = rollout(gym.make("TemperatureKD-v0", **tiny_kwargs), seed=4)
    sparse = rollout(gym.make("TemperatureKD-v0", **dict(tiny_kwargs, reward_interval=3)), seed=4)
    np.testing.assert_array_equal(every[-1][0], sparse[-1][0])  # the same training run
    rewards = {name: np.array([t[1] for t in trace[1:]]) for name, trace in (("every", every), ("sparse", sparse))}
    measured = [i for i, t in enumerate(sparse[1:]) if t[4]["batch"] % 3 == 0 or t[2]]
    assert measured == [2, 5, 7, 10, 13, 15]  # batches 3, 6, 8 of each epoch
    assert np.all(rewards["sparse"][[i for i in range(16) if i not in measured]] == 0.0)
    for epoch in (slice(0, 8), slice(8, 16)):
        assert rewards["sparse"][epoch].sum() == pytest.approx(rewards["every"][epoch].sum(), abs=1e-12)


def test_default_is_the_cloud_edge_task(mnist1d_cache):
    env = gym.make("TemperatureKD-v0", cache_dir=mnist1d_cache).unwrapped
    assert env.task.config.transfer_size == 1000 and len(env.task.data.y_train) == 1000
    assert len(env.task.teacher_data.y_train) == 8000
    assert (env.options.batch_size, env.options.epochs, env.max_steps) == (64, 40, 600)  # the task's schedule
    assert env.task.teacher_record["source"] == "shipped"
    old = gym.make("TemperatureKD-v0", task="mnist1d", cache_dir=mnist1d_cache).unwrapped  # the first default
    assert (old.options.batch_size, old.options.epochs, old.max_steps) == (128, 30, 1860)
    assert old.task.fingerprint()["teacher_sha256"] == env.task.fingerprint()["teacher_sha256"]


@pytest.mark.parametrize("measure", ["batch", "heldout"])
@pytest.mark.parametrize("exploration", ["none", "entropy_mixup", "entropy_mixup_authors"])
def test_options_run_and_stay_deterministic(tiny_kwargs, measure, exploration):
    kwargs = dict(tiny_kwargs, reward_measure=measure, exploration=exploration, warmup_epochs=1, epochs=3)
    a = rollout(gym.make("TemperatureKD-v0", **kwargs), seed=1)
    b = rollout(gym.make("TemperatureKD-v0", **kwargs), seed=1)
    assert_same_trace(a, b)
    per_epoch = (256 // 5) // 32 if exploration == "entropy_mixup" else 256 // 32  # the authors' keeps all
    assert len(a) - 1 == 2 * per_epoch  # warm-up epoch runs inside reset


def test_authors_purification_matches_a_hand_computation():
    # 20 instances, entropy score i -> ranked 19, 18, ..., 0. Bands of M = 2: the 10-20% band is ranks
    # 2, 3 (instances 17, 16), the 80-90% band ranks 16, 17 (instances 3, 2). w_k = 0.7 + 0.3 (2 - k) / 2.
    x = torch.arange(20, dtype=torch.float32).view(20, 1, 1) * torch.ones(20, 1, 4)
    mixed = authors_purification(x, torch.arange(20, dtype=torch.float32))
    expected = x.clone()
    expected[3] = 1.0 * x[17] + 0.0 * x[3]  # rank 0 of the band: the hard image alone
    expected[2] = 0.85 * x[16] + 0.15 * x[2]
    torch.testing.assert_close(mixed, expected)
    assert torch.equal(x, torch.arange(20, dtype=torch.float32).view(20, 1, 1) * torch.ones(20, 1, 4))  # not in place


def test_authors_mixup_runs_on_its_epochs_only_and_keeps_labels(tiny_kwargs):
    env = gym.make("TemperatureKD-v0", **dict(tiny_kwargs, exploration="entropy_mixup_authors", epochs=7,
                                              mixup_interval=2)).unwrapped  # fmt: skip
    assert [e for e in range(7) if env.is_mixup_epoch(e)] == [3, 5]  # epochs 4 and 6 counted from 1
    obs, _ = env.reset(seed=3)
    x, y = env.task.data.x_train, env.task.data.y_train
    seen = []
    action = np.zeros(env.action_space.shape, np.float32)
    for _ in range(env.max_steps):
        _, _, terminated, _, info = env.step(action)
        seen.append(info["epoch"])
        if terminated:
            break
    assert sorted(set(seen)) == list(range(7))
    # Replay the same episode and read epoch 4 (index 3), then epoch 5, batch by batch.
    env.reset(seed=3)
    for _ in range(3 * env.steps_per_epoch):
        env.step(action)

    def epoch_batches():
        xs, ys = [], []
        for _ in range(env.steps_per_epoch):
            batch_x, batch_y = env.batch_data()
            xs.append(batch_x.clone())
            ys.append(batch_y.clone())
            env.step(action)
        epoch_x, epoch_y = torch.cat(xs).flatten(1), torch.cat(ys)
        # plain[i, j]: row i is training instance j, input and label (the band's first rank takes the hard
        # image whole, w = 1, under its own label: a changed row too).
        plain = (epoch_x[:, None, :] == x.flatten(1)[None, :, :]).all(dim=2) & (epoch_y[:, None] == y[None, :])
        return epoch_y, plain

    assert env.steps_per_epoch * env.options.batch_size == len(y)  # every instance trains each epoch
    epoch_y, plain = epoch_batches()
    changed = ~plain.any(dim=1)
    assert 0 < changed.sum() <= int(0.1 * len(y))
    assert torch.equal(epoch_y.sort().values, y.sort().values)  # labels kept: the whole set trains
    epoch_y, plain = epoch_batches()  # epoch 5: the plain set again, every instance once
    assert plain.any(dim=1).all() and plain.any(dim=0).all()


@pytest.mark.parametrize(
    "action, message",
    [
        (np.zeros(31, np.float32), r"shape \(31,\).*expected.*\(32,\)"),
        (np.zeros((1, 32), np.float32), r"shape \(1, 32\)"),
        (np.full(32, np.nan, np.float32), "NaN or inf"),
        (np.full(32, np.inf, np.float32), "NaN or inf"),
        (np.full(32, 1.5, np.float32), r"expected them in \[-1, 1\]"),
        (np.array(["a"] * 32), "numeric"),
        (np.full(32, 0.5 + 0.5j), r"dtype complex128.*real"),
        (np.full(32, 0.5 + 0j), r"dtype complex128.*real"),  # a complex dtype, even with no imaginary part
    ],
)
def test_bad_action_gives_a_clear_error(tiny_kwargs, action, message):
    env = gym.make("TemperatureKD-v0", disable_env_checker=True, **tiny_kwargs).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"epochs": 2, "warmup_epochs": 2}, "warmup_epochs=2"),
        ({"reward_measure": "loss"}, "reward_measure='loss'"),
        ({"exploration": "yes"}, "exploration='yes'"),
        ({"kd_weight": float("nan")}, "kd_weight=nan"),
        ({"reward_set_size": 10_000}, "reward_set_size=10000"),
        ({"batch_size": 512}, "batch_size=512"),
        ({"task": "imagenet"}, "task='imagenet'"),
        ({"reward_interval": 0}, "reward_interval=0"),
        ({"mixup_interval": 0}, "mixup_interval=0"),
        # Wrong types name the kwarg, its value and what is allowed (a bool is not an int, a string not a number).
        ({"batch_size": True}, "batch_size=True; expected a positive integer"),
        ({"epochs": 2.5}, "epochs=2.5; expected a positive integer"),
        ({"epochs": "2"}, "epochs='2'; expected a positive integer"),
        ({"warmup_epochs": False}, "warmup_epochs=False; expected an integer"),
        ({"ce_weight": None}, "ce_weight=None; expected a finite number >= 0"),
        ({"ce_weight": "abc"}, "ce_weight='abc'; expected a finite number >= 0"),
        ({"ce_weight": "0.1"}, "ce_weight='0.1'; expected a finite number >= 0"),
        ({"kd_weight": True}, "kd_weight=True; expected a finite number >= 0"),
        ({"student_lr": "0.01"}, "student_lr='0.01'; expected a finite number > 0"),
        ({"action_scale": 1 + 2j}, r"action_scale=\(1\+2j\); expected a finite number > 0"),
        ({"warmup_temperature": None}, "warmup_temperature=None; expected a number"),
        ({"reward_measure": None}, "reward_measure=None; expected one of"),
        ({"cache_dir": 123}, "cache_dir=123; expected a folder"),
        ({"data_root": 1.5}, "data_root=1.5; expected a folder"),
        ({"task": 7}, "task=7"),
    ],
)
def test_bad_kwargs_give_a_clear_error(tiny_kwargs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("TemperatureKD-v0", **dict(tiny_kwargs, **kwargs))


def test_numpy_numbers_are_accepted(tiny_kwargs):
    env = gym.make("TemperatureKD-v0", **dict(tiny_kwargs, epochs=np.int64(2), ce_weight=np.float32(0.5)))
    assert env.unwrapped.options.epochs == 2 and env.unwrapped.options.ce_weight == 0.5


def student_state(env) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in env.unwrapped.student.state_dict().items()}


@pytest.mark.parametrize("copy_with", ["pickle", "deepcopy"])
@pytest.mark.parametrize("extra", [{}, {"feature_weight": 0.5, "feature_loss": "hint"}, {"reward_measure": "batch"}])
def test_a_mid_episode_copy_continues_identically(tiny_kwargs, copy_with, extra):
    """A copy made between steps (the coming batch's forward pass done, its update pending) goes on
    exactly as the original: the same observations, rewards, infos and student weights to the end."""
    import copy
    import pickle

    env = gym.make("TemperatureKD-v0", **dict(tiny_kwargs, **extra))
    actions = np.random.default_rng(0).uniform(-1, 1, (16, 32)).astype(np.float32)
    env.reset(seed=3)
    for action in actions[:5]:
        env.step(action)
    twin = pickle.loads(pickle.dumps(env)) if copy_with == "pickle" else copy.deepcopy(env)
    assert twin.unwrapped.student is not env.unwrapped.student
    for action in actions[5:]:
        a, b = env.step(action), twin.step(action)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:] == b[1:]
        for (name, p), q in zip(student_state(env).items(), student_state(twin).values()):
            assert torch.equal(p, q), name
    assert a[2]  # the episode ran to its end


@pytest.mark.parametrize(("copy_with", "copy_first", "task", "steps_before"), [
    ("deepcopy", False, "default", 0), ("pickle", True, "default", 0), ("pickle", False, "default", 1),
    ("deepcopy", True, "default", 1), ("deepcopy", False, "default", 4), ("pickle", True, "default", 4),
    ("deepcopy", True, "set", 2),
])  # fmt: skip
def test_copies_of_the_default_task_continue_identically_in_either_order(mnist1d_cache, copy_with, copy_first, task,
                                                                         steps_before):  # fmt: skip
    """The default task's student has BatchNorm, whose backward checks that its running statistics were not
    changed in place after the forward pass: a copy made right after reset or after any step, by pickle or
    deepcopy, steps on exactly as an uncopied env, whether it or the original steps first (and likewise on
    the shipped task set's default-capacity instance)."""
    import copy
    import pickle

    kwargs = {"cache_dir": str(mnist1d_cache)}
    if task == "set":
        kwargs |= {"task_set": "cloud-edge-v0", "split": "test", "observation": "extended",
                   "action": "temperature_weight"}  # fmt: skip
    make = lambda: gym.make("TemperatureKD-v0", **kwargs)  # noqa: E731
    shape = make().action_space.shape
    actions = np.random.default_rng(1).uniform(-1, 1, (steps_before + 3, *shape)).astype(np.float32)
    options = {"instance": 3} if task == "set" else None
    reference, env = make(), make()
    for e in (reference, env):
        e.reset(seed=5, options=options)
        for action in actions[:steps_before]:
            e.step(action)
    twin = pickle.loads(pickle.dumps(env)) if copy_with == "pickle" else copy.deepcopy(env)
    for action in actions[steps_before:]:
        expected = reference.step(action)
        pair = (twin.step(action), env.step(action)) if copy_first else (env.step(action), twin.step(action))
        for got in pair:
            np.testing.assert_array_equal(got[0], expected[0])
            assert got[1:] == expected[1:]
    for e in (env, twin):
        for (name, p), q in zip(student_state(reference).items(), student_state(e).values()):
            assert torch.equal(p, q), name


def test_a_copy_before_reset_and_after_the_end(tiny_kwargs):
    import copy
    import pickle

    env = gym.make("TemperatureKD-v0", **tiny_kwargs).unwrapped
    fresh = copy.deepcopy(env)
    assert fresh.student is None and len(rollout(fresh, seed=0)) == 17
    ended = pickle.loads(pickle.dumps(fresh))
    with pytest.raises(RuntimeError, match="ended"):
        ended.step(np.zeros(32, np.float32))
    assert_same_trace(rollout(ended, seed=0), rollout(env, seed=0))


def test_rgb_array_renders_the_last_steps_temperatures(tiny_kwargs):
    env = gym.make("TemperatureKD-v0", render_mode="rgb_array", **tiny_kwargs)
    assert env.metadata["render_modes"] == ["rgb_array"] and env.render_mode == "rgb_array"
    env.reset(seed=0)
    before = env.render()
    assert before.dtype == np.uint8 and before.ndim == 3 and before.shape[2] == 3
    env.step(np.full(32, -0.366, np.float32))  # T = 1 everywhere
    low = env.render()
    env.step(np.full(32, 0.5, np.float32))  # T ~ 9.5
    high = env.render()
    assert low.shape == high.shape == before.shape
    assert not np.array_equal(low, before) and not np.array_equal(low, high)
    assert gym.make("TemperatureKD-v0", **tiny_kwargs).unwrapped.render() is None  # render_mode=None: no frame


def test_step_before_reset_and_after_end(tiny_kwargs):
    env = gym.make("TemperatureKD-v0", disable_env_checker=True, **tiny_kwargs).unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(32, np.float32))
    rollout(env, seed=0)
    with pytest.raises(RuntimeError, match="ended"):
        env.step(np.zeros(32, np.float32))


@pytest.mark.parametrize("feature_loss", ["nmd", "hint"])
def test_feature_distillation_adds_its_term_and_stays_deterministic(tiny_kwargs, feature_loss):
    kwargs = dict(tiny_kwargs, feature_weight=2.0, feature_loss=feature_loss)
    a = rollout(gym.make("TemperatureKD-v0", **kwargs), seed=5)
    assert_same_trace(a, rollout(gym.make("TemperatureKD-v0", **kwargs), seed=5))
    assert all(t[4]["loss_feature"] > 0 for t in a[1:])
    plain = rollout(gym.make("TemperatureKD-v0", **tiny_kwargs), seed=5)
    assert "loss_feature" not in plain[1][4]
    # The first batch is the same (same student, same data); the term changes what the student learns.
    np.testing.assert_array_equal(a[0][0], plain[0][0])
    assert a[-1][4]["loss_ce"] != plain[-1][4]["loss_ce"]


def test_feature_weight_zero_is_the_plain_env(tiny_kwargs):
    assert_same_trace(rollout(gym.make("TemperatureKD-v0", **dict(tiny_kwargs, feature_weight=0.0)), seed=6),
                      rollout(gym.make("TemperatureKD-v0", **tiny_kwargs), seed=6))  # fmt: skip


def test_feature_loss_that_cannot_compare_the_networks_is_refused(tiny_kwargs):
    # The tiny task's MLPs have no spatial extent: attention transfer has nothing to compare.
    with pytest.raises(ValueError, match="feature_loss='attention' cannot compare"):
        gym.make("TemperatureKD-v0", **dict(tiny_kwargs, feature_weight=1.0, feature_loss="attention"))
    with pytest.raises(ValueError, match="feature_loss='fitnet'"):
        gym.make("TemperatureKD-v0", **dict(tiny_kwargs, feature_weight=1.0, feature_loss="fitnet"))
    with pytest.raises(ValueError, match="feature_weight=-1.0"):
        gym.make("TemperatureKD-v0", **dict(tiny_kwargs, feature_weight=-1.0))


def test_attention_transfer_on_the_default_cnns(mnist1d_cache):
    env = gym.make("TemperatureKD-v0", feature_weight=1.0, feature_loss="attention", epochs=1, cache_dir=mnist1d_cache)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
    assert info["loss_feature"] > 0


def test_make_vec_env_passes_rgb_array(tiny_kwargs):
    """SB3's make_vec_env makes a string id with render_mode="rgb_array" first (it retries only a TypeError)."""
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env("TemperatureKD-v0", n_envs=1, seed=0, env_kwargs=tiny_kwargs)
    assert venv.get_attr("render_mode") == ["rgb_array"]
    venv.reset()
    venv.step(np.zeros((1, 32), np.float32))
    assert venv.get_images()[0].shape[2] == 3
    venv.close()
