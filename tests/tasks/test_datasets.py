"""Datasets: mnist1d (generated), digits (scikit-learn), CIFAR (tiny files in CIFAR's own format)."""

import random

import numpy as np
import pytest
import torch

from kd_envs.tasks.datasets import DatasetConfig, augment_batch, load_dataset

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def _assert_splits_equal(a, b):
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


# --- DatasetConfig ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "imagenet"}, "DatasetConfig.name='imagenet'"),
        ({"num_train": 0}, "DatasetConfig.num_train=0"),
        ({"num_val": 1.5}, "DatasetConfig.num_val=1.5"),
        ({"num_test": -3}, "DatasetConfig.num_test=-3"),
    ],
)
def test_dataset_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DatasetConfig(**kwargs)


def test_dataset_config_sizes_default_per_field():
    assert DatasetConfig("digits").sizes() == (1197, 200, 400)
    assert DatasetConfig("mnist1d", num_val=7).sizes() == (8000, 7, 2000)


# --- mnist1d ------------------------------------------------------------------------------------

SMALL_MNIST1D = DatasetConfig("mnist1d", num_train=200, num_val=50, num_test=50)


@pytest.fixture(scope="module")
def mnist1d_small():
    return load_dataset(SMALL_MNIST1D)


def test_mnist1d_shapes_and_dtypes(mnist1d_small):
    data = mnist1d_small
    assert data.x_train.shape == (200, 40) and data.x_val.shape == (50, 40) and data.x_test.shape == (50, 40)
    assert data.y_train.shape == (200,) and data.y_val.shape == (50,) and data.y_test.shape == (50,)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.x_test.dtype == torch.float32 and data.y_test.dtype == torch.int64
    assert data.num_classes == 10 and data.input_shape == (40,) and not data.augment
    assert set(data.y_train.tolist()) == set(range(10))
    assert torch.isfinite(data.x_train).all()


def test_mnist1d_sizes_that_are_not_multiples_of_ten():
    data = load_dataset(DatasetConfig("mnist1d", num_train=23, num_val=5, num_test=3))
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (23, 5, 3)


def test_mnist1d_is_seeded(mnist1d_small):
    _assert_splits_equal(load_dataset(SMALL_MNIST1D), mnist1d_small)
    other = load_dataset(DatasetConfig("mnist1d", num_train=200, num_val=50, num_test=50, seed=1))
    assert not torch.equal(other.x_train, mnist1d_small.x_train)


def test_mnist1d_leaves_global_generators_alone():
    random.seed(1234)
    np.random.seed(5678)
    expected = (random.random(), np.random.rand())
    random.seed(1234)
    np.random.seed(5678)
    load_dataset(DatasetConfig("mnist1d", num_train=20, num_val=10, num_test=10, seed=3))
    assert (random.random(), np.random.rand()) == expected


# --- digits -------------------------------------------------------------------------------------


def test_digits_shapes_and_splits():
    data = load_dataset(DatasetConfig("digits", num_train=100, num_val=20, num_test=30))
    assert data.x_train.shape == (100, 64) and data.x_val.shape == (20, 64) and data.x_test.shape == (30, 64)
    assert data.y_test.shape == (30,) and data.y_train.dtype == torch.int64 and data.x_val.dtype == torch.float32
    assert data.num_classes == 10 and data.input_shape == (64,)


def test_digits_defaults_use_every_sample_standardised():
    data = load_dataset(DatasetConfig("digits"))
    sizes = (len(data.y_train), len(data.y_val), len(data.y_test))
    assert sizes == (1197, 200, 400) and sum(sizes) == 1797
    x = torch.cat([data.x_train, data.x_val, data.x_test]).double()
    assert x.mean().item() == pytest.approx(0, abs=1e-5) and x.std().item() == pytest.approx(1, abs=1e-3)
    # the seed shuffles before splitting
    other = load_dataset(DatasetConfig("digits", seed=1))
    assert not torch.equal(other.y_train, data.y_train)
    assert torch.equal(torch.cat([other.y_train, other.y_val, other.y_test]).bincount(),
                       torch.cat([data.y_train, data.y_val, data.y_test]).bincount())  # fmt: skip


def test_digits_rejects_more_samples_than_exist():
    with pytest.raises(ValueError, match="digits has 1797 samples"):
        load_dataset(DatasetConfig("digits", num_train=1700, num_val=50, num_test=50))


# --- CIFAR --------------------------------------------------------------------------------------


def _denormalise(x: torch.Tensor, mean, std) -> np.ndarray:
    """(N, 3, 32, 32) normalised floats -> (N, 3072) uint8 in CIFAR's channel-major row layout."""
    pixels = (x.double() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]) * 255
    return pixels.round().to(torch.uint8).reshape(len(x), 3072).numpy()


def test_cifar10_loads_a_local_folder(tmp_path, write_cifar):
    raw = write_cifar(tmp_path, "cifar10", train_per_file=4, num_test=6)
    data = load_dataset(DatasetConfig("cifar10", num_train=12, num_val=4, num_test=5, root=str(tmp_path)))
    assert data.x_train.shape == (12, 3, 32, 32) and data.x_val.shape == (4, 3, 32, 32)
    assert data.x_test.shape == (5, 3, 32, 32) and data.y_test.shape == (5,)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.num_classes == 10 and data.input_shape == (3, 32, 32) and data.augment

    # one pixel by hand: test image 0, green channel, row 5, column 7
    value = raw["test"][0][0, 1 * 1024 + 5 * 32 + 7]
    expected = (value / 255 - CIFAR10_MEAN[1]) / CIFAR10_STD[1]
    assert data.x_test[0, 1, 5, 7].item() == pytest.approx(expected, abs=1e-5)

    # the test split is the official test set, in order
    assert np.array_equal(_denormalise(data.x_test, CIFAR10_MEAN, CIFAR10_STD), raw["test"][0][:5])
    assert np.array_equal(data.y_test.numpy(), raw["test"][1][:5])
    # train and val are distinct images of the official training set, each with its own label
    train_images, train_labels = raw["train"]
    index = {image.tobytes(): i for i, image in enumerate(train_images)}
    seen = []
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
        for image, label in zip(_denormalise(x, CIFAR10_MEAN, CIFAR10_STD), y.tolist(), strict=True):
            i = index[image.tobytes()]
            assert train_labels[i] == label
            seen.append(i)
    assert len(set(seen)) == 16


def test_cifar100_loads_fine_labels(tmp_path, write_cifar):
    raw = write_cifar(tmp_path, "cifar100", train_per_file=10, num_test=3)
    data = load_dataset(DatasetConfig("cifar100", num_train=6, num_val=2, num_test=3, root=str(tmp_path)))
    assert data.num_classes == 100 and data.x_train.shape == (6, 3, 32, 32)
    assert np.array_equal(data.y_test.numpy(), raw["test"][1])
    assert np.array_equal(_denormalise(data.x_test, CIFAR100_MEAN, CIFAR100_STD), raw["test"][0])


def test_cifar_is_seeded(tmp_path, write_cifar):
    write_cifar(tmp_path, "cifar10", train_per_file=4, num_test=2)
    config = DatasetConfig("cifar10", num_train=8, num_val=4, num_test=2, root=str(tmp_path))
    _assert_splits_equal(load_dataset(config), load_dataset(config))
    other = load_dataset(DatasetConfig("cifar10", num_train=8, num_val=4, num_test=2, root=str(tmp_path), seed=1))
    assert not torch.equal(other.x_train, load_dataset(config).x_train)


def test_cifar_root_from_the_environment(tmp_path, monkeypatch, write_cifar):
    write_cifar(tmp_path, "cifar10", train_per_file=2, num_test=2)
    monkeypatch.setenv("KD_GYM_CIFAR_ROOT", str(tmp_path))
    assert load_dataset(DatasetConfig("cifar10", num_train=4, num_val=2, num_test=2)).x_train.shape[0] == 4


def test_cifar_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_dataset(DatasetConfig("cifar10", num_train=4, num_val=2, num_test=2, root=str(tmp_path)))
    assert str(tmp_path / "cifar-10-batches-py") in str(error.value)
    assert "'cifar-10-batches-py'" in str(error.value)


def test_cifar_missing_file_is_named(tmp_path, write_cifar):
    write_cifar(tmp_path, "cifar10", train_per_file=2, num_test=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_dataset(DatasetConfig("cifar10", num_train=4, num_val=2, num_test=2, root=str(tmp_path)))


def test_cifar_without_a_root_points_to_the_environment_variable(monkeypatch):
    monkeypatch.delenv("KD_GYM_CIFAR_ROOT", raising=False)
    with pytest.raises(FileNotFoundError, match="KD_GYM_CIFAR_ROOT") as error:
        load_dataset(DatasetConfig("cifar100", num_train=4, num_val=2, num_test=2))
    assert "cifar-100-python" in str(error.value)


def test_cifar_rejects_more_images_than_the_folder_holds(tmp_path, write_cifar):
    write_cifar(tmp_path, "cifar10", train_per_file=2, num_test=2)
    with pytest.raises(ValueError, match="10 training and 2 test"):
        load_dataset(DatasetConfig("cifar10", num_train=8, num_val=4, num_test=2, root=str(tmp_path)))


# --- augment_batch ------------------------------------------------------------------------------


def test_augment_batch_is_seeded():
    x = torch.randn(5, 3, 8, 8)
    a = augment_batch(x, torch.Generator().manual_seed(0))
    b = augment_batch(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, augment_batch(x, torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("seed", range(4))
def test_augment_batch_outputs_are_crops_of_the_padded_input_or_their_mirror(seed):
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(100 + seed))
    out = augment_batch(x, torch.Generator().manual_seed(seed), padding=4)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for k in range(len(x)):
        candidates = [
            crop.flip(2) if flip else crop
            for dy in range(9)
            for dx in range(9)
            for crop in [padded[k, :, dy : dy + 8, dx : dx + 8]]
            for flip in (False, True)
        ]
        assert sum(torch.equal(out[k], c) for c in candidates) == 1


def test_augment_batch_without_padding_only_flips():
    x = torch.randn(32, 3, 4, 4)
    out = augment_batch(x, torch.Generator().manual_seed(0), padding=0)
    same = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    mirrored = [torch.equal(o, i.flip(2)) for o, i in zip(out, x, strict=True)]
    assert all(s != m for s, m in zip(same, mirrored, strict=True))
    assert 0 < sum(mirrored) < len(x)  # a fair coin per image
