"""CPU episodes pinned to the bit: the numbers the code gave before ``device`` existed (commit 0336932), for
the paths a device moves tensors on: teacher training, TemperatureKD-v0 with features, mixup, the extended
observation and a CIFAR-format task with augmentation, and N2NCompress-v0's candidate training. Float results
can differ in the last bits on another machine kind (``agents.common.leaderboard.machine_kind``), so the pins
are exact on the kind that recorded them and skipped elsewhere, as ``--verify`` is exact only there."""

import hashlib

import gymnasium as gym
import pytest

import kd_envs  # noqa: F401  (registers the environments)
from agents.common.leaderboard import machine_kind
from kd_envs.tasks import DatasetConfig, ModelConfig, TaskConfig, TrainConfig, make_task
from kd_envs.tasks.task import tensors_sha256
from tests.conftest import PINNED_MACHINE_KIND

RECORDED_ON = PINNED_MACHINE_KIND
CIFAR_TASK = dict(dataset=DatasetConfig("cifar10", num_train=128, num_val=32, num_test=32),
                  teacher=ModelConfig("resnet", depth=8), student=ModelConfig("resnet", depth=8),
                  teacher_training=TrainConfig(epochs=1, batch_size=32))  # fmt: skip
CASES = {
    "plain": {},
    "nmd": {"feature_weight": 0.5},
    "hint": {"feature_weight": 0.5, "feature_loss": "hint"},
    "extended": {"observation": "extended", "action": "temperature_weight"},
    "mixup": {"exploration": "entropy_mixup", "epochs": 3},
    "mixup_authors": {"exploration": "entropy_mixup_authors", "epochs": 3, "mixup_interval": 1},
}
# Digests of each episode (observations, rewards, infos, final weights), made by the code of commit 0336932.
PINS: dict[str, str] = {
    "plain": "64d89265dd26038d",
    "nmd": "9ce794ee1368dd66",
    "hint": "6fe5ce32ec0fb5bb",
    "extended": "01865d837b13f451",
    "mixup": "6958dc745d5d333a",
    "mixup_authors": "1038ecb4b00f662e",
    "teacher": "6358094ec1f95b7eea74aa085b8fe14122ac9d459ac24dbffc0d99df8ab48dbd",
    "cifar_teacher": "4a9c5860ecd78c3bcdeb0023c7b739773bfd697b20a3ec572d082d56dcf2aebd",
    "cifar": "eb30018f21a33306",
    "n2n": "e5de8734097772d1",
}


def digest(episode: list) -> str:
    return hashlib.sha256(repr(episode).encode()).hexdigest()[:16]


def episode(kwargs: dict) -> list:
    env = gym.make("TemperatureKD-v0", **kwargs)
    env.action_space.seed(5)
    obs, _ = env.reset(seed=3)
    record = [obs.tobytes()]
    while True:
        obs, reward, terminated, _, info = env.step(env.action_space.sample())
        record.append((obs.tobytes(), reward, sorted(info.items())))
        if terminated:
            return record + [tensors_sha256(env.unwrapped.student.state_dict())]


@pytest.fixture(autouse=True)
def recorded_machine_kind():
    if machine_kind() != RECORDED_ON:
        pytest.skip(f"the pins are exact on {RECORDED_ON!r}, this machine is {machine_kind()!r}")


@pytest.mark.parametrize("case", sorted(CASES))
def test_temperature_kd_episodes_are_the_pinned_ones(tiny_kwargs, case):
    assert digest(episode({**tiny_kwargs, **CASES[case]})) == PINS[case]


def test_teacher_training_and_a_cifar_format_episode_are_the_pinned_ones(tmp_path, tiny_kwargs, write_cifar):
    teacher = make_task(tiny_kwargs["task"], cache_dir=tmp_path / "cache").teacher  # trained here, on a fresh cache
    assert tensors_sha256(teacher.state_dict()) == PINS["teacher"]
    write_cifar(tmp_path, "cifar10", train_per_file=32, num_test=32)
    config = TaskConfig(**{**CIFAR_TASK, "dataset": DatasetConfig("cifar10", num_train=128, num_val=32, num_test=32,
                                                                  root=str(tmp_path))})  # fmt: skip
    teacher = make_task(config, cache_dir=tmp_path / "cache").teacher  # trained here, on a fresh cache
    assert tensors_sha256(teacher.state_dict()) == PINS["cifar_teacher"]
    kwargs = dict(task=config, batch_size=32, epochs=1, reward_set_size=16, cache_dir=str(tmp_path / "cache"))
    assert digest(episode(kwargs)) == PINS["cifar"]


def test_n2n_candidates_are_the_pinned_ones(tiny_n2n_kwargs):
    env = gym.make("N2NCompress-v0", **{**tiny_n2n_kwargs, "cache_students": False})
    results = []
    for seed, actions in ((0, [0, 1, 0, 2, 3]), (1, [1, 0, 0, 1, 6, 6])):
        env.reset(seed=seed)
        for action in actions:
            _, reward, terminated, _, info = env.step(action)
            if terminated:
                break
        results.append((reward, info["accuracy"], info["student_parameters"]))
    assert digest(results) == PINS["n2n"]
