import gymnasium as gym
import numpy as np
import pytest

import kd_envs  # noqa: F401
from kd_envs.envs.n2n_compress import (
    DEFAULT_SHRINK_FACTORS,
    authors_constraint_epsilon,
    compression_reward,
    constrained_reward,
    constraint_epsilon,
    log_params_reward,
)
from kd_envs.tasks import architecture_of


def play(env, actions, seed=None):
    obs, info = env.reset(seed=seed)
    steps = []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(np.int64(a))
        steps.append((obs, reward, terminated, truncated, info))
        if terminated:
            break
    return steps


@pytest.fixture(scope="module")
def env(tiny_n2n_kwargs):
    return gym.make("N2NCompress-v0", **tiny_n2n_kwargs)


def test_spaces_and_reset_info(env):
    n = 3  # the tiny teacher: three linear layers
    assert env.action_space == gym.spaces.Discrete(len(DEFAULT_SHRINK_FACTORS))
    obs, info = env.reset(seed=0)
    assert obs["layers"].shape == (n, 8) and obs["position"].shape == (n,)
    np.testing.assert_array_equal(obs["stage"], [1, 0])
    np.testing.assert_array_equal(obs["position"], [1, 0, 0])
    np.testing.assert_array_equal(obs["kept"], [-1, -1, -1])
    np.testing.assert_array_equal(obs["action_mask"], [1, 1, 0, 0, 0, 0, 0])
    assert info["descriptors"][:, 4].tolist() == [32, 32, 32]  # outputs
    assert info["teacher_parameters"] == 64 * 32 + 32 + 2 * (32 * 32 + 32) + 330


def test_two_stages_and_reward_by_hand(env):
    # Remove the middle layer, then shrink the kept two to 0.5 and 0.25.
    steps = play(env, [0, 1, 0, 1, 0], seed=0)
    assert [s[2] for s in steps] == [False] * 4 + [True]
    obs_stage2 = steps[2][0]
    np.testing.assert_array_equal(obs_stage2["stage"], [0, 1])
    np.testing.assert_array_equal(obs_stage2["kept"], [1, 0, 1])
    np.testing.assert_array_equal(obs_stage2["position"], [1, 0, 0])
    np.testing.assert_array_equal(obs_stage2["shrink"], [-1, 0, -1])
    np.testing.assert_array_equal(obs_stage2["action_mask"], [1] * 7)
    np.testing.assert_array_equal(steps[3][0]["position"], [0, 0, 1])
    assert all(s[1] == 0.0 for s in steps[:-1])
    _, reward, _, _, info = steps[-1]
    # 64 -> 16 -> 8 -> 10 classes.
    params = (64 * 16 + 16) + (16 * 8 + 8) + (8 * 10 + 10)
    assert info["student_parameters"] == params
    assert info["architecture_summary"] == "lin16 lin8"
    c = 1 - params / info["teacher_parameters"]
    assert info["compression"] == pytest.approx(c)
    assert reward == pytest.approx(c * (2 - c) * info["accuracy"] / info["teacher_accuracy"])
    assert info["degenerate"] == "" and 0.0 < info["accuracy"] <= 1.0


def test_compression_reward_hand_values():
    assert compression_reward(0.5, 0.9, 0.9) == pytest.approx(0.75)
    assert compression_reward(0.8, 0.45, 0.9) == pytest.approx(0.96 * 0.5)
    assert compression_reward(0.0, 1.0, 1.0) == 0.0


def test_nothing_left_ends_after_removal_with_minus_one(env):
    steps = play(env, [1, 1, 1], seed=0)
    assert len(steps) == 3 and steps[-1][2]
    assert steps[-1][1] == -1.0
    assert "nothing left" in steps[-1][4]["degenerate"]


def test_not_smaller_than_the_teacher_gets_minus_one(env):
    steps = play(env, [0, 0, 0, 6, 6, 6], seed=0)
    assert steps[-1][1] == -1.0 and "not smaller" in steps[-1][4]["degenerate"]
    assert steps[-1][4]["train_seconds"] == 0.0


def test_other_actions_keep_in_the_removal_stage(env):
    steps = play(env, [5, 3, 1, 0, 0], seed=0)
    np.testing.assert_array_equal(steps[2][0]["kept"], [1, 1, 0])


def test_invalid_actions_raise_clear_errors(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(np.int64(7))
    with pytest.raises(ValueError, match="one integer"):
        env.step(np.array([0, 1]))
    with pytest.raises(ValueError, match="one integer"):
        env.step(0.5)
    with pytest.raises(ValueError, match="one integer"):
        env.step(np.complex128(1 + 0j))


def test_rgb_array_renders_the_decisions(tiny_n2n_kwargs):
    env = gym.make("N2NCompress-v0", render_mode="rgb_array", **tiny_n2n_kwargs)
    assert env.metadata["render_modes"] == ["rgb_array"]
    env.reset(seed=0)
    frames = [env.render()]
    for action in (1, 0, 0, 1):  # remove layer 0, keep 1 and 2, shrink layer 1 to half
        env.step(np.int64(action))
        frames.append(env.render())
    assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape == frames[0].shape for f in frames)
    assert all(not np.array_equal(a, b) for a, b in zip(frames, frames[1:]))  # every decision shows
    assert gym.make("N2NCompress-v0", **tiny_n2n_kwargs).unwrapped.render() is None


def test_make_vec_env_passes_rgb_array(tiny_n2n_kwargs):
    """SB3's make_vec_env makes a string id with render_mode="rgb_array" first (it retries only a TypeError)."""
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env("N2NCompress-v0", n_envs=2, seed=0, env_kwargs=tiny_n2n_kwargs)
    obs = venv.reset()
    assert obs["layers"].shape == (2, 3, 8)
    venv.step(np.array([0, 1]))
    venv.close()


def test_step_after_the_end_raises(env):
    play(env, [1, 1, 1], seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(np.int64(0))


def test_repeat_is_cached_and_equal(tiny_n2n_kwargs):
    env = gym.make("N2NCompress-v0", **tiny_n2n_kwargs)
    first = play(env, [0, 0, 1, 2, 3], seed=11)[-1]
    again = play(env, [0, 0, 1, 2, 3])[-1]  # no new seed: same training seed
    assert again[4]["cached"] and again[1] == first[1]
    # A fresh env on the same disk cache also finds it.
    other = gym.make("N2NCompress-v0", **tiny_n2n_kwargs)
    assert play(other, [0, 0, 1, 2, 3], seed=11)[-1][4]["cached"]


def test_training_seed_follows_the_reset_seed(tiny_n2n_kwargs):
    env = gym.make("N2NCompress-v0", **tiny_n2n_kwargs)
    a = play(env, [1, 1, 1], seed=1)[-1][4]["training_seed"]
    b = play(env, [1, 1, 1])[-1][4]["training_seed"]
    c = play(env, [1, 1, 1], seed=2)[-1][4]["training_seed"]
    assert a == b != c
    fixed = gym.make("N2NCompress-v0", **tiny_n2n_kwargs, training_seed=5)
    assert play(fixed, [1, 1, 1], seed=1)[-1][4]["training_seed"] == 5


def test_single_shrink_factor_means_removal_only(tiny_n2n_kwargs):
    env = gym.make("N2NCompress-v0", **tiny_n2n_kwargs, shrink_factors=(1.0,))
    assert env.action_space.n == 2
    steps = play(env, [0, 1, 1, 1], seed=0)
    assert steps[-1][4]["architecture_summary"] == "lin32"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(shrink_factors=(0.5, 1.5)), "shrink_factors"),
        (dict(shrink_factors=(0.5, 0.5)), "repeats"),
        (dict(epochs=0), "epochs"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(kd_weight=-1.0), "kd_weight"),
        (dict(training_seed=-3), "training_seed"),
        (dict(task="imagenet"), "task"),
        # Gymnasium warns of the unknown render mode before the env refuses it ("human" it would serve through
        # its HumanRendering wrapper around rgb_array).
        pytest.param(
            dict(render_mode="ascii"),
            r"render_mode='ascii'; expected None or one of \['rgb_array'\]",
            marks=pytest.mark.filterwarnings("ignore:.*render_mode"),
        ),
        (dict(stages="shrinkage"), "stages"),
        (dict(removed_layers=[1]), "removed_layers"),  # only with stages="shrink"
        (dict(stages="shrink", removed_layers=[3]), "removed_layers"),
        (dict(stages="shrink", removed_layers=[1, 1]), "removed_layers"),
        (dict(stages="shrink", removed_layers=[0, 1, 2]), "removed_layers"),
        (dict(stages="shrink", removed_layers=[0.5]), "removed_layers"),
        (dict(stages="shrink", removed_layers=5), "removed_layers"),
        # Wrong types name the kwarg, its value and what is allowed (a bool is not an int, a string not a number).
        (dict(epochs="3"), "epochs='3'; expected a positive integer"),
        (dict(epochs=2.5), "epochs=2.5; expected a positive integer"),
        (dict(batch_size=True), "batch_size=True; expected a positive integer"),
        (dict(lr="0.01"), "lr='0.01'; expected a finite number > 0"),
        (dict(kd_weight=None), "kd_weight=None; expected a finite number >= 0"),
        (dict(ce_weight="1"), "ce_weight='1'; expected a finite number >= 0"),
        (dict(shrink_factors=0.5), "shrink_factors=0.5; expected a sequence of numbers in \\(0, 1\\]"),
        (dict(shrink_factors="ab"), "shrink_factors='ab'; expected a sequence of numbers in \\(0, 1\\]"),
        (dict(shrink_factors=()), "shrink_factors=\\(\\); expected a sequence of numbers in \\(0, 1\\]"),
        (dict(shrink_factors=(0.5, True)), "shrink_factors=\\(0.5, True\\); expected a sequence of numbers"),
        (dict(training_seed=True), "training_seed=True; expected a non-negative int or None"),
        (dict(optimizer=None), "optimizer=None; expected one of"),
        (dict(stages=None), "stages=None; expected one of"),
        (dict(cache_students="no"), "cache_students='no'; expected True or False"),
        (dict(cache_dir=123), "cache_dir=123; expected a folder"),
        (dict(data_root=4), "data_root=4; expected a folder"),
        (dict(reward="acc"), "reward='acc'; expected one of \\('n2n', 'budget', 'log_params', 'constrained'\\)"),
        (dict(reward=None), "reward=None; expected one of"),
        (dict(parameter_budget=0), "parameter_budget=0; expected a number in \\(0, 1\\]"),
        (dict(parameter_budget=1.5), "parameter_budget=1.5; expected a number in \\(0, 1\\]"),
        (dict(parameter_budget="0.1"), "parameter_budget='0.1'; expected a number in \\(0, 1\\]"),
    ],
)
def test_bad_kwargs_name_the_kwarg(tiny_n2n_kwargs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("N2NCompress-v0", **{**tiny_n2n_kwargs, **kwargs})


def test_conv_teacher_with_shapes_that_cannot_connect(kd_cache):
    # A VGG-style teacher on 8-pixel digits rows would be odd; use a 1-D VGG on length-64 digits:
    # 3 pooled stages take 64 -> 8, so every layer kept is valid, and the teacher spec matches.
    from kd_envs.tasks import DatasetConfig, ModelConfig, TaskConfig, TrainConfig

    task = TaskConfig(
        dataset=DatasetConfig("digits", num_train=256, num_val=64, num_test=64),
        teacher=ModelConfig("vgg", width=4, depth=3),
        teacher_training=TrainConfig(epochs=1, batch_size=64),
    )
    env = gym.make("N2NCompress-v0", task=task, epochs=1, batch_size=64, cache_dir=str(kd_cache))
    teacher = env.unwrapped.teacher_architecture
    assert teacher == architecture_of(task.teacher, (64,), 10) and len(teacher.layers) == 6
    steps = play(env, [0] * 6 + [0] * 6, seed=0)
    assert steps[-1][4]["degenerate"] == "" and steps[-1][1] > -1.0


def test_resnet_teacher_on_cifar_format_files(tmp_path, kd_cache, write_cifar):
    # ResNet8 (a stem conv + three two-conv residual blocks) on a tiny CIFAR-10-format folder.
    from kd_envs.tasks import DatasetConfig, ModelConfig, TaskConfig, TrainConfig

    write_cifar(tmp_path, "cifar10", train_per_file=32, num_test=16)
    task = TaskConfig(
        dataset=DatasetConfig("cifar10", num_train=96, num_val=64, num_test=16, root=str(tmp_path)),
        teacher=ModelConfig("resnet", depth=8),
        teacher_training=TrainConfig(epochs=1, batch_size=32),
    )
    env = gym.make("N2NCompress-v0", task=task, epochs=1, batch_size=32, cache_dir=str(kd_cache))
    obs, info = env.reset(seed=0)
    assert obs["layers"].shape == (7, 8)
    np.testing.assert_array_equal(info["descriptors"][:, 5], [0, 1, 0, 1, 0, 1, 0])  # skip starts
    # Remove the whole first block and the first conv of the last; halve everything left.
    removal = [0, 1, 1, 0, 0, 1, 0]
    steps = play(env, removal + [1] * 4)
    final = steps[-1][4]
    assert final["degenerate"] == "" and final["architecture_summary"] == "conv8 [conv16/2 conv16] [conv32]"
    assert final["student_parameters"] < final["teacher_parameters"] and np.isfinite(steps[-1][1])


def test_shapes_that_cannot_connect_give_minus_one(tiny_n2n_kwargs):
    # A residual block over three convs whose paddings (1, 0, 2) keep the length: removing the last
    # conv leaves a block that shortens the signal by 2, which its shortcut cannot meet.
    from kd_envs.tasks.architecture import Architecture, LayerSpec

    env = gym.make("N2NCompress-v0", **tiny_n2n_kwargs)
    layers = tuple(LayerSpec("conv", 4, 3, 1, p) for p in (1, 0, 2))
    env.unwrapped.teacher_architecture = Architecture((64,), 10, layers, ((0, 2),))
    steps = play(env, [0, 0, 1, 0, 0], seed=0)
    reward, info = steps[-1][1], steps[-1][4]
    assert reward == -1.0 and info["degenerate"].startswith("shapes do not connect")
    assert info["student_parameters"] > 0 and info["train_seconds"] == 0.0


def test_removal_only_episodes_keep_full_widths(tiny_n2n_kwargs):
    env = gym.make("N2NCompress-v0", **tiny_n2n_kwargs, stages="removal")
    joint = gym.make("N2NCompress-v0", **tiny_n2n_kwargs)
    steps = play(env, [0, 1, 0], seed=0)
    assert len(steps) == 3 and steps[-1][2]  # one step per teacher layer, then the end
    assert all(obs["stage"].tolist() == [1.0, 0.0] for obs, *_ in steps[:-1])
    last = steps[-1][4]
    assert last["removed_layers"] == [1] and last["architecture_summary"] == "lin32 lin32"
    # The same student as the joint episode that keeps the two layers at factor 1.0 (index 6).
    joint_steps = play(joint, [0, 1, 0, 6, 6], seed=0)
    assert joint_steps[-1][4]["architecture"] == last["architecture"]
    assert joint_steps[-1][1] == steps[-1][1]
    # Keeping every layer leaves the teacher: not smaller, so -1.
    assert play(env, [0, 0, 0], seed=0)[-1][1] == -1.0


def test_shrink_only_episodes_start_from_the_parent(tiny_n2n_kwargs):
    env = gym.make("N2NCompress-v0", **tiny_n2n_kwargs, stages="shrink", removed_layers=[0])
    obs, _ = env.reset(seed=0)
    assert obs["stage"].tolist() == [0.0, 1.0] and obs["kept"].tolist() == [0.0, 1.0, 1.0]
    assert obs["position"].tolist() == [0.0, 1.0, 0.0] and obs["shrink"].tolist() == [0.0, -1.0, -1.0]
    assert env.unwrapped.action_masks().sum() == len(DEFAULT_SHRINK_FACTORS)
    steps = play(env, [1, 0], seed=0)  # factors 0.5 and 0.25 for layers 1 and 2
    assert len(steps) == 2 and steps[-1][2]
    # Stage 2 of the paper's protocol gives what the joint episode with the same decisions gives.
    joint = gym.make("N2NCompress-v0", **tiny_n2n_kwargs)
    joint_steps = play(joint, [1, 0, 0, 1, 0], seed=0)
    assert steps[-1][4]["architecture"] == joint_steps[-1][4]["architecture"]
    assert steps[-1][4]["architecture_summary"] == "lin16 lin8" and steps[-1][4]["removed_layers"] == [0]
    assert steps[-1][1] == joint_steps[-1][1]


def test_the_deep_default_teacher_is_shipped_and_its_space_is_large(mnist1d_cache):
    from kd_envs.tasks.task import TASKS

    cached = set(mnist1d_cache.rglob("*.pt"))
    env = gym.make("N2NCompress-v0", cache_dir=str(mnist1d_cache))  # the shipped teacher: nothing trains
    n2n = env.unwrapped
    assert n2n.task.config == TASKS["mnist1d-resnet"]
    assert n2n.task.teacher_record["source"] == "shipped"
    assert n2n.num_layers == 13 and len(n2n.teacher_architecture.residual_blocks) == 6
    assert n2n.teacher_parameters == 61242 and n2n.distill_config.training.epochs == 5
    # Students: every subset of kept layers, each kept layer with any of the K factors: (K + 1)^n - 1.
    assert (len(n2n.shrink_factors) + 1) ** n2n.num_layers - 1 >= 10**6
    assert set(mnist1d_cache.rglob("*.pt")) == cached


# ---- reward options ---------------------------------------------------------------------------------------
TINY_TEACHER_PARAMETERS = 64 * 32 + 32 + 2 * (32 * 32 + 32) + 330  # 4522


def test_log_params_reward_by_hand(tiny_n2n_kwargs):
    assert log_params_reward(0.9, 1000) == pytest.approx(-0.1 * 6.907755278982137)  # natural log
    assert log_params_reward(1.0, 5000) == 0.0
    env = gym.make("N2NCompress-v0", **tiny_n2n_kwargs, reward="log_params")
    _, reward, _, _, info = play(env, [0, 1, 0, 1, 0], seed=0)[-1]
    params = (64 * 16 + 16) + (16 * 8 + 8) + (8 * 10 + 10)
    assert info["student_parameters"] == params
    assert reward == pytest.approx(-(1 - info["accuracy"]) * np.log(params))
    # The same student under the default reward: the same training, so the same accuracy.
    n2n = play(gym.make("N2NCompress-v0", **tiny_n2n_kwargs), [0, 1, 0, 1, 0], seed=0)[-1]
    assert n2n[4]["accuracy"] == info["accuracy"]
    # A degenerate student scores below any valid one: -ln(params of the teacher).
    assert play(env, [1, 1, 1], seed=0)[-1][1] == pytest.approx(-np.log(TINY_TEACHER_PARAMETERS))


def test_constraint_epsilon_as_meant_and_as_written():
    meant = [constraint_epsilon(it) for it in (0, 5, 15, 20, 30, 45)]
    assert meant == pytest.approx([1.0, (2 / 3) ** 4, 0.0, 0.0, 0.0, 0.0])
    # The authors' min(1, max(0, (1 - it/15)**4)): the clamp after the 4th power lets epsilon grow back.
    written = [authors_constraint_epsilon(it) for it in (0, 5, 15, 20, 30, 45)]
    assert written == pytest.approx([1.0, (2 / 3) ** 4, 0.0, (1 / 3) ** 4, 1.0, 1.0])
    assert constrained_reward(0.8, True, 1.0) == pytest.approx(0.8)
    assert constrained_reward(0.8, True, 0.0) == -1.0
    assert constrained_reward(0.8, True, 0.5) == pytest.approx(-0.5 + 0.4)
    assert constrained_reward(0.8, False, 0.0) == 0.8


def test_constrained_reward_fades_to_minus_one_over_the_search(tiny_n2n_kwargs):
    env = gym.make("N2NCompress-v0", **tiny_n2n_kwargs, reward="constrained", parameter_budget=0.3)
    big, small = [0, 0, 0, 6, 6, 5], [0, 1, 0, 1, 0]  # 4,393 and 1,258 parameters; the budget is 1,356.6
    base = {tuple(a): play(gym.make("N2NCompress-v0", **tiny_n2n_kwargs), a, seed=0)[-1] for a in (big, small)}
    seen = []
    for episode in range(12):
        _, reward, _, _, info = play(env, big if episode % 2 == 0 else small, seed=0 if episode == 0 else None)[-1]
        seen.append((info["iteration"], info["over_budget"], reward))
        n2n_reward = base[tuple(big if episode % 2 == 0 else small)][1]
        epsilon = max(0.0, 1 - (episode // 5) / 15) ** 4
        assert info["constraint_epsilon"] == pytest.approx(epsilon)
        assert reward == pytest.approx((epsilon - 1) + epsilon * n2n_reward if info["over_budget"] else n2n_reward)
    assert [s[0] for s in seen] == [0] * 5 + [1] * 5 + [2] * 2
    assert [s[1] for s in seen] == [True, False] * 6
    # A seeded reset starts a new search: the clock goes back to iteration 0.
    assert play(env, big, seed=3)[-1][4]["iteration"] == 0


def test_budget_masks_keep_every_episode_within_the_budget(tiny_n2n_kwargs):
    env = gym.make("N2NCompress-v0", **tiny_n2n_kwargs, reward="budget", parameter_budget=0.3)
    n2n = env.unwrapped
    assert n2n.budget_parameters == pytest.approx(0.3 * TINY_TEACHER_PARAMETERS)
    rng = np.random.default_rng(0)
    for episode in range(6):
        obs, _ = env.reset(seed=episode)
        while True:
            mask = n2n.action_masks()
            assert mask.any() and np.array_equal(obs["action_mask"], mask.astype(np.float32))
            obs, reward, terminated, _, info = env.step(np.int64(rng.choice(np.flatnonzero(mask))))
            assert not info["clipped"]
            if terminated:
                break
        assert info["degenerate"] == "" and info["student_parameters"] <= n2n.budget_parameters
        assert info["clipped_decisions"] == 0 and info["parameter_budget"] == n2n.budget_parameters
        assert reward == pytest.approx(info["accuracy"] / info["teacher_accuracy"])


def test_budget_masks_and_clipping_by_hand(tiny_n2n_kwargs):
    # Budget 0.3 * 4,522 = 1,356.6 parameters. Keeping all three layers is allowed (all at 0.25: 754), removing
    # the last one when the first two are gone is not (nothing left).
    env = gym.make("N2NCompress-v0", **tiny_n2n_kwargs, reward="budget", parameter_budget=0.3)
    n2n = env.unwrapped
    env.reset(seed=0)
    assert n2n.action_masks().tolist() == [True, True] + [False] * 5
    env.step(np.int64(1)), env.step(np.int64(1))
    assert n2n.action_masks().tolist() == [True, False] + [False] * 5
    # An agent that ignores the masks: it asks to keep everything at full width (factor index 6). Layer 0 at
    # width w leaves (64w + w) + (8w + 8) + 72 + 90 <= 1,356.6 with the rest at 0.25, so w <= 16: 0.5 (index 1)
    # is the allowed factor nearest to 1.0. Then layer 1 (width 16 before it) allows 8 (0.25), and so layer 2.
    env.reset(seed=0)
    steps = [env.step(np.int64(a)) for a in (0, 0, 0)]
    assert [s[4]["clipped"] for s in steps] == [False] * 3
    assert n2n.action_masks().tolist() == [True, True] + [False] * 5  # factors 0.25 and 0.5 for layer 0
    steps = [env.step(np.int64(6)) for _ in range(3)]
    assert [s[4]["clipped"] for s in steps] == [True] * 3
    _, reward, terminated, _, info = steps[-1]
    assert terminated and info["architecture_summary"] == "lin16 lin8 lin8" and info["clipped_decisions"] == 3
    assert info["student_parameters"] == (64 * 16 + 16) + (16 * 8 + 8) + (8 * 8 + 8) + (8 * 10 + 10) == 1338
    assert reward == pytest.approx(info["accuracy"] / info["teacher_accuracy"])
    # Removing everything: the last removal is clipped to keep; removal-stage actions >= 2 mean keep.
    steps = play(env, [1, 1, 1, 0], seed=0)
    assert [s[4]["clipped"] for s in steps] == [False, False, True, False]
    assert steps[-1][4]["architecture_summary"] == "lin8" and steps[-1][4]["removed_layers"] == [0, 1]


def test_budget_with_removal_only_and_shrink_only_episodes(tiny_n2n_kwargs):
    # Removal only (full widths): one layer kept is 64*32+32 + 32*10+10 = 2,410 parameters, two are 3,466.
    env = gym.make("N2NCompress-v0", **tiny_n2n_kwargs, stages="removal", reward="budget", parameter_budget=0.6)
    env.reset(seed=0)
    assert env.unwrapped.action_masks().tolist() == [True, True] + [False] * 5
    steps = [env.step(np.int64(0)) for _ in range(3)]  # keep, keep, keep: the second keep is clipped
    assert [s[4]["clipped"] for s in steps] == [False, True, True]
    assert steps[-1][4]["student_parameters"] == 2410
    with pytest.raises(ValueError, match=r"parameter_budget=0.5; expected .* student of these stages has 2410"):
        gym.make("N2NCompress-v0", **tiny_n2n_kwargs, stages="removal", reward="budget", parameter_budget=0.5)
    # Shrink only after removing layer 0: layer 1 at width w, then layer 2 at 8: (64w + w) + (8w + 8) + 90 = 73w + 98,
    # at most 1,356.6 for w <= 17: widths 8 (0.25) and 16 (0.5), not 19 (0.6).
    env = gym.make("N2NCompress-v0", **tiny_n2n_kwargs, stages="shrink", removed_layers=[0], reward="budget",
                   parameter_budget=0.3)  # fmt: skip
    env.reset(seed=0)
    allowed = [f for f, ok in zip(DEFAULT_SHRINK_FACTORS, env.unwrapped.action_masks()) if ok]
    assert allowed == [0.25, 0.5]


def test_a_budget_no_student_meets_is_refused(tiny_n2n_kwargs, monkeypatch):
    # The smallest tiny student keeps one layer at 0.25: 64*8+8 + 8*10+10 = 610 parameters, 0.135 of the teacher.
    with pytest.raises(ValueError, match=r"parameter_budget=0.1; expected .* has 610 parameters, 0.1349"):
        gym.make("N2NCompress-v0", **tiny_n2n_kwargs, reward="budget")
    import kd_envs.envs.n2n_compress as module

    monkeypatch.setattr(module, "MAX_BUDGET_LAYERS", 2)
    with pytest.raises(ValueError, match="reward='budget' with a teacher of 3 layers"):
        gym.make("N2NCompress-v0", **tiny_n2n_kwargs, reward="budget", parameter_budget=0.3)


def test_budget_masks_on_the_default_task(mnist1d_cache):
    # The deep default (13 layers, 61,242 parameters) with the default budget of 10%: mask-following episodes,
    # checked up to their last decision, where every allowed choice gives a student within the budget (the
    # last step itself would train the student).
    env = gym.make("N2NCompress-v0", cache_dir=str(mnist1d_cache), reward="budget")
    n2n = env.unwrapped
    assert n2n.budget_parameters == pytest.approx(6124.2)
    rng = np.random.default_rng(0)
    for episode in range(5):
        obs, _ = env.reset(seed=episode)
        kept, factors = [], []
        for _ in range(n2n.num_layers):
            decision = int(rng.choice(np.flatnonzero(n2n.action_masks())))
            kept.append(decision == 0)
            obs, *_ = env.step(np.int64(decision))
        sequence = [i for i in range(n2n.num_layers) if kept[i]]
        for _ in sequence[:-1]:
            index = int(rng.choice(np.flatnonzero(n2n.action_masks())))
            factors.append(DEFAULT_SHRINK_FACTORS[index])
            env.step(np.int64(index))
        last = np.flatnonzero(n2n.action_masks())
        assert len(last) > 0
        for index in last:
            student = n2n.teacher_architecture.remove_layers(kept).shrink(factors + [DEFAULT_SHRINK_FACTORS[index]])
            student.layer_shapes()
            assert student.num_parameters() <= n2n.budget_parameters
        # Nothing narrower was masked at the last decision: the masks clip widths from above.
        assert last.tolist() == list(range(len(last)))
