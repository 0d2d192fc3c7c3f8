"""Datasets for distillation tasks, loaded whole into tensors (they are small) and split three ways.

* ``train``: what the student (and the teacher) learn from;
* ``val``: held out; environments draw their reward sets from it;
* ``test``: reported once at the end of an episode, never used for rewards or selection.

Nothing here downloads: mnist1d is generated procedurally, digits ships with scikit-learn, CIFAR is
read from a local folder.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATASETS = ("mnist1d", "digits", "cifar10", "cifar100")

# Default (train, val, test) sizes. mnist1d's follow the planning run: 8,000 training samples.
_DEFAULT_SIZES = {
    "mnist1d": (8000, 1000, 2000),
    "digits": (1197, 200, 400),
    "cifar10": (45000, 5000, 10000),
    "cifar100": (45000, 5000, 10000),
}
# mnist1d's generator arguments that a shifted draw may change (scales of its transformations and noise).
MNIST1D_SHIFTABLE = ("scale_coeff", "max_translation", "corr_noise_scale", "iid_noise_scale", "shear_scale")
_CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
_CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
CIFAR_ROOT_ENV = "KD_GYM_CIFAR_ROOT"


@dataclass(frozen=True)
class DatasetConfig:
    """Which data, how much of it, and the seed that generates (mnist1d) or splits it.

    Sizes left at ``None`` take the dataset's defaults. For CIFAR, ``num_train + num_val`` come from
    the official training set and ``num_test`` from the official test set; ``root`` is the folder
    holding ``cifar-10-batches-py`` / ``cifar-100-python`` (default: ``$KD_GYM_CIFAR_ROOT``).

    ``generator`` (mnist1d only) overrides arguments of mnist1d's generator (``mnist1d.data.
    get_dataset_args``), e.g. ``{"corr_noise_scale": 0.5}``: a *shifted draw* of the same ten classes,
    such as an edge device whose sensor is noisier than the data a cloud teacher learned from.
    """

    name: str = "mnist1d"
    num_train: int | None = None
    num_val: int | None = None
    num_test: int | None = None
    seed: int = 0
    root: str | None = None
    generator: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"DatasetConfig.name={self.name!r}: expected one of {DATASETS}")
        if self.generator is not None:
            if self.name != "mnist1d":
                raise ValueError(f"DatasetConfig.generator={self.generator!r}: only mnist1d has a generator to shift")
            if not isinstance(self.generator, dict) or not self.generator:
                raise ValueError(f"DatasetConfig.generator={self.generator!r}: expected a non-empty dict or None")
            bad = sorted(set(self.generator) - set(MNIST1D_SHIFTABLE))
            if bad:
                raise ValueError(f"DatasetConfig.generator has unknown keys {bad}; expected some of "
                                 f"{MNIST1D_SHIFTABLE}")  # fmt: skip
            for key, value in self.generator.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
                        or value < 0:  # fmt: skip
                    raise ValueError(f"DatasetConfig.generator[{key!r}]={value!r}: expected a finite number >= 0")
        for field in ("num_train", "num_val", "num_test"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"DatasetConfig.{field}={value!r}: expected a positive integer or None")

    def key_parts(self) -> dict:
        """The fields that decide the data, for cache keys: a ``generator`` left at None is omitted, so
        every unshifted dataset keeps the key it had before the field existed."""
        parts = dataclasses.asdict(self)
        if parts["generator"] is None:
            del parts["generator"]
        return parts

    def sizes(self) -> tuple[int, int, int]:
        default = _DEFAULT_SIZES[self.name]
        given = (self.num_train, self.num_val, self.num_test)
        return tuple(d if g is None else g for g, d in zip(given, default))  # type: ignore[return-value]


@dataclass
class DatasetSplits:
    """Tensors of one dataset: inputs float32, labels int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    augment: bool = False  # random crop + flip at training time (CIFAR)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: str | torch.device) -> DatasetSplits:
        """The splits on ``device``: ``self`` where every tensor is there already (no copy), else a copy."""
        tensors = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if isinstance(getattr(self, f.name), torch.Tensor)}  # fmt: skip
        device = torch.device(device)
        if all(t.device == device for t in tensors.values()):
            return self
        return dataclasses.replace(self, **{name: t.to(device) for name, t in tensors.items()})


def load_dataset(config: DatasetConfig) -> DatasetSplits:
    if config.name == "mnist1d":
        return _load_mnist1d(config)
    if config.name == "digits":
        return _load_digits(config)
    return _load_cifar(config)


def _split(x: np.ndarray, y: np.ndarray, sizes: tuple[int, int, int], num_classes: int, **kw) -> DatasetSplits:
    a, b = sizes[0], sizes[0] + sizes[1]
    t = lambda arr, dt: torch.as_tensor(np.ascontiguousarray(arr), dtype=dt)  # noqa: E731
    return DatasetSplits(
        t(x[:a], torch.float32), t(y[:a], torch.int64),
        t(x[a:b], torch.float32), t(y[a:b], torch.int64),
        t(x[b:], torch.float32), t(y[b:], torch.int64),
        num_classes=num_classes, **kw,
    )  # fmt: skip


def _load_mnist1d(config: DatasetConfig) -> DatasetSplits:
    from mnist1d.data import get_dataset_args, make_dataset

    sizes = config.sizes()
    total = sum(sizes)
    args = get_dataset_args()
    args.num_samples = -(-total // 10) * 10  # make_dataset draws num_samples // 10 per class
    args.train_split = 1.0  # we split it ourselves into train / val / test
    args.seed = config.seed
    for key, value in (config.generator or {}).items():
        setattr(args, key, value)
    # make_dataset seeds Python's and NumPy's global generators; put them back as they were.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x, y = data["x"][:total], data["y"][:total]
    return _split(x.astype(np.float32), y, sizes, num_classes=10)


def _load_digits(config: DatasetConfig) -> DatasetSplits:
    from sklearn.datasets import load_digits

    sizes = config.sizes()
    digits = load_digits()
    if sum(sizes) > len(digits.target):
        raise ValueError(f"digits has {len(digits.target)} samples; DatasetConfig asks for {sizes} (train, val, test)")
    order = np.random.default_rng(config.seed).permutation(len(digits.target))
    x = digits.data[order].astype(np.float32)
    x = (x - x.mean()) / x.std()
    return _split(x[: sum(sizes)], digits.target[order][: sum(sizes)], sizes, num_classes=10)


def cifar_root(config: DatasetConfig) -> Path:
    root = config.root or os.environ.get(CIFAR_ROOT_ENV)
    if not root:
        raise FileNotFoundError(
            f"{config.name} is read from a local folder and never downloaded: pass DatasetConfig(root=...) "
            f"or set ${CIFAR_ROOT_ENV} to the folder that holds "
            f"'{_cifar_class(config.name).base_folder}/' (the 'python version' archive from the CIFAR page, "
            "extracted)."
        )
    return Path(root).expanduser()


def _cifar_class(name: str):
    from torchvision.datasets import CIFAR10, CIFAR100

    base = CIFAR10 if name == "cifar10" else CIFAR100

    class LocalCIFAR(base):
        """torchvision's reader, checking that the files exist rather than their md5: a local folder
        may hold a subset in CIFAR's format (as the tests write), and nothing is ever downloaded."""

        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:  # torchvision's md5-checks the meta file too
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    LocalCIFAR.__name__ = f"Local{base.__name__}"
    return LocalCIFAR


def _load_cifar(config: DatasetConfig) -> DatasetSplits:
    cls = _cifar_class(config.name)
    root = cifar_root(config)
    folder = root / cls.base_folder
    expected = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{config.name}: expected CIFAR's python-format files in {folder}, missing {missing}. "
            f"Put the extracted '{cls.base_folder}' folder under {root}; nothing is downloaded."
        )
    train = cls(str(root), train=True, download=False)
    test = cls(str(root), train=False, download=False)
    num_train, num_val, num_test = config.sizes()
    if num_train + num_val > len(train.targets) or num_test > len(test.targets):
        raise ValueError(
            f"{config.name} in {folder} has {len(train.targets)} training and {len(test.targets)} test "
            f"images; DatasetConfig asks for train={num_train} + val={num_val} and test={num_test}"
        )
    order = np.random.default_rng(config.seed).permutation(len(train.targets))[: num_train + num_val]
    mean = np.asarray(_CIFAR_MEAN[config.name], dtype=np.float32)
    std = np.asarray(_CIFAR_STD[config.name], dtype=np.float32)
    to_chw = lambda a: ((a.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)  # noqa: E731
    x = np.concatenate([to_chw(train.data[order]), to_chw(test.data[:num_test])])
    y = np.concatenate([np.asarray(train.targets)[order], np.asarray(test.targets)[:num_test]])
    return _split(x, y, (num_train, num_val, num_test), num_classes=len(train.classes), augment=True)


def write_cifar_files(
    root: str | Path,
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> Path:
    """Write images and labels in CIFAR's python format under ``root``, as torchvision reads them.

    ``train`` and ``test`` are (uint8 images (N, 3072) in CIFAR's row layout: the red plane, then green,
    then blue, each 32x32; int labels (N,)). CIFAR-10 gets five training batches (``train`` split
    evenly), CIFAR-100 one training file. Returns the dataset's folder. For small local sets: tests, and
    smoke runs of the CIFAR tasks."""
    if name not in ("cifar10", "cifar100"):
        raise ValueError(f"name={name!r}: expected 'cifar10' or 'cifar100'")
    label_key = "labels" if name == "cifar10" else "fine_labels"
    folder = Path(root) / _cifar_class(name).base_folder
    folder.mkdir(parents=True, exist_ok=True)

    def dump(file: str, data: np.ndarray | None = None, labels: np.ndarray | None = None, **meta) -> None:
        obj = meta or {"data": np.asarray(data, dtype=np.uint8), label_key: np.asarray(labels).tolist()}
        with open(folder / file, "wb") as f:
            pickle.dump(obj, f)

    if name == "cifar10":
        for i, (x, y) in enumerate(zip(np.array_split(train[0], 5), np.array_split(train[1], 5)), start=1):
            dump(f"data_batch_{i}", x, y)
        dump("test_batch", *test)
        dump("batches.meta", label_names=[f"class{i}" for i in range(10)])
    else:
        dump("train", *train)
        dump("test", *test)
        dump("meta", fine_label_names=[f"class{i}" for i in range(100)])
    return folder


def augment_batch(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """CIFAR's standard training augmentation (random crop after zero padding, horizontal flip),
    batched, with every draw from ``generator`` so a seeded episode sees the same crops."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    # The draws come from the (CPU) generator whatever ``x``'s device, so every device sees the same crops.
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(n, x.shape[1], h, w + 2 * padding)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(n, x.shape[1], h, w)
    out = out.gather(3, cols)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(3), out)
