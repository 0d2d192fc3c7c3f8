import pytest
import torch

from kd_envs.tasks import DatasetConfig, ModelConfig, TaskConfig, TrainConfig

# Tiny models run fastest on one thread, and two test processes must not fight over the cores.
torch.set_num_threads(1)

TINY_TASK = TaskConfig(
    dataset=DatasetConfig("digits", num_train=256, num_val=64, num_test=64),
    teacher=ModelConfig("mlp", width=32, depth=1),
    student=ModelConfig("mlp", width=8, depth=1),
    teacher_training=TrainConfig(epochs=3, batch_size=64),
)


@pytest.fixture(scope="session")
def kd_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("kd_cache")


@pytest.fixture(scope="session")
def tiny_kwargs(kd_cache):
    """gym.make kwargs for a TemperatureKD episode of 2 epochs x 8 batches on digits."""
    return dict(task=TINY_TASK, batch_size=32, epochs=2, reward_set_size=32, cache_dir=str(kd_cache))
