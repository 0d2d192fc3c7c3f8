import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kd_envs.tasks import DatasetConfig, ModelConfig, TaskConfig, TrainConfig, task_sets
from kd_envs.tasks.datasets import write_cifar_files
from kd_envs.tasks.task import load_task_data, make_task

ROOT = Path(__file__).resolve().parents[1]

# Tiny models run fastest on one thread, and two test processes must not fight over the cores.
torch.set_num_threads(1)

TINY_TASK = TaskConfig(
    dataset=DatasetConfig("digits", num_train=256, num_val=64, num_test=64),
    teacher=ModelConfig("mlp", width=32, depth=1),
    student=ModelConfig("mlp", width=8, depth=1),
    teacher_training=TrainConfig(epochs=3, batch_size=64),
)

# N2NCompress-v0: a 3-layer MLP teacher on digits, candidates trained for one epoch of 8 batches.
TINY_N2N_TASK = TaskConfig(
    dataset=DatasetConfig("digits", num_train=256, num_val=64, num_test=64),
    teacher=ModelConfig("mlp", width=32, depth=3),
    teacher_training=TrainConfig(epochs=3, batch_size=64),
)


@pytest.fixture(scope="session")
def kd_cache(tmp_path_factory):
    """The session's teacher and dataset cache: no test reads or writes the user's ~/.cache."""
    return tmp_path_factory.mktemp("kd_cache")


@pytest.fixture(scope="session")
def mnist1d_cache(kd_cache):
    """``kd_cache`` holding the full mnist1d dataset, the data of every default task (their teachers are
    shipped): generated once a session, in this fixture's setup rather than in some test's call."""
    load_task_data(DatasetConfig("mnist1d"), kd_cache)
    return kd_cache


@pytest.fixture(scope="session")
def tiny_kwargs(kd_cache):
    """gym.make kwargs for a TemperatureKD episode of 2 epochs x 8 batches on digits (its teacher trained
    here, once a session)."""
    make_task(TINY_TASK, cache_dir=kd_cache)
    return dict(task=TINY_TASK, batch_size=32, epochs=2, reward_set_size=32, cache_dir=str(kd_cache))


@pytest.fixture(scope="session")
def tiny_n2n_kwargs(kd_cache):
    """gym.make kwargs for N2NCompress-v0 episodes that train each candidate for 8 tiny batches (the
    teacher trained here, once a session)."""
    make_task(TINY_N2N_TASK, cache_dir=kd_cache)
    return dict(task=TINY_N2N_TASK.to_dict(), epochs=1, batch_size=32, cache_dir=str(kd_cache))


@pytest.fixture(scope="session")
def tiny_json_kwargs(tiny_kwargs):
    """``tiny_kwargs`` with the task as a plain dict, the form a leaderboard entry or config.json stores."""
    return dict(tiny_kwargs, task=tiny_kwargs["task"].to_dict())


@pytest.fixture(scope="session")
def tiny_ppo_hyperparams():
    """PPO overrides for tiny runs: one 16-step rollout per update, one gradient step per rollout."""
    return {"n_steps": 16, "batch_size": 16, "n_epochs": 1}


@pytest.fixture(scope="session")
def tiny_ppo_dirs(tmp_path_factory, tiny_json_kwargs, tiny_ppo_hyperparams):
    """Two PPO agents trained for two tiny episodes (training seeds 0 and 1), saved by ``train_agent``."""
    from agents.common.training import train_agent

    root = tmp_path_factory.mktemp("ppo")
    dirs = []
    for seed in (0, 1):
        out = root / f"seed_{seed}"
        train_agent("ppo", "TemperatureKD-v0", seed, out, 32, tiny_json_kwargs, tiny_ppo_hyperparams,
                    progress_bar=False, tensorboard=False)  # fmt: skip
        dirs.append(out)
    return dirs


# Tasks of your own, made by factories of a module the ``own_tasks`` fixture puts on the path: small digits
# tasks whose MLP teacher is trained in the factory (3 epochs); ``other`` has another teacher on the same data
# (fingerprints that must differ), ``sequential`` a student of your own (an nn.Sequential).
OWN_TASKS_MODULE = "own_tasks_for_tests"
OWN_TASKS = """
import functools

import torch
from sklearn.datasets import load_digits
from torch import nn

from kd_envs.tasks import DatasetSplits, ModelConfig, Task, TrainConfig, build_model, train_classifier


def splits():
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    return (x[:256], y[:256]), (x[256:320], y[256:320]), (x[320:384], y[320:384])


def teacher(seed):
    train, val, test = splits()
    model = build_model(ModelConfig("mlp", 32, 1), (64,), 10, torch.Generator().manual_seed(seed))
    train_classifier(model, DatasetSplits(*train, *val, *test, num_classes=10), TrainConfig(epochs=3, batch_size=64),
                     torch.Generator().manual_seed(seed))
    return model


def make(seed, student, name):
    train, val, test = splits()
    return Task.from_tensors(train=train, val=val, test=test, teacher=teacher(seed), student=student,
                             student_training=TrainConfig(epochs=2, batch_size=32), name=name,
                             factory=f"{__name__}:{name}")


@functools.cache
def digits():
    return make(0, ModelConfig("mlp", 8, 1), "digits")


@functools.cache
def other():
    return make(1, ModelConfig("mlp", 8, 1), "other")


def own_student():
    return nn.Sequential(nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10))


@functools.cache
def sequential():
    return make(0, own_student, "sequential")
"""


@pytest.fixture(scope="session")
def own_tasks(tmp_path_factory):
    """The name of a module of task factories (``OWN_TASKS``), importable for the session: ``f"{own_tasks}:digits"``
    is a ``task`` kwarg."""
    folder = tmp_path_factory.mktemp("own_tasks")
    (folder / f"{OWN_TASKS_MODULE}.py").write_text(OWN_TASKS)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        yield OWN_TASKS_MODULE


@pytest.fixture(autouse=True)
def clean_checkout(monkeypatch):
    """Entries made by tests record a fixed clean commit: an official entry refuses a dirty checkout
    (tests/agents/test_leaderboard.py tests that rule and the real git_commit), and a developer's tree
    is dirty while the tests run."""
    import agents.common.leaderboard

    monkeypatch.setattr(agents.common.leaderboard, "git_commit", lambda repo=None: "0" * 40)


@pytest.fixture
def fast_bootstrap(monkeypatch):
    """Fewer bootstrap resamples for tests that build entries but do not check the interval's width."""
    import agents.common.leaderboard

    monkeypatch.setattr(agents.common.leaderboard, "BOOTSTRAP_REPS", 200)


def write_cifar(root: Path, name: str, train_per_file: int, num_test: int, seed: int = 0) -> dict:
    """Write a tiny random dataset in CIFAR's python format and return the raw arrays: ``train``/``test``
    as (uint8 (N, 3072), labels). CIFAR-10 has five training files of ``train_per_file`` images each."""
    rng = np.random.default_rng(seed)
    num_classes = 10 if name == "cifar10" else 100
    num_train = train_per_file * (5 if name == "cifar10" else 1)

    def split(n):
        return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, num_classes, n)

    train, test = split(num_train), split(num_test)
    write_cifar_files(root, name, train, test)
    return {"train": train, "test": test}


@pytest.fixture(name="write_cifar")
def write_cifar_fixture():
    """:func:`write_cifar`, for tests that need CIFAR-format files in a temporary folder."""
    return write_cifar


@pytest.fixture
def run_script(tmp_path_factory):
    """Run ``scripts/<name>.py`` with ``argv`` in a fresh interpreter from the repository root, this checkout's
    packages first on the path (a study's end-to-end smoke test; the tests call the library directly). As
    ``fast_bootstrap`` does in this process, a ``sitecustomize`` on the path cuts the bootstrap resamples of
    the entries' intervals to 200 there: the smoke tests check what is written, not the intervals' width."""
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text("import agents.common.leaderboard as leaderboard\n\n"
                                           "leaderboard.BOOTSTRAP_REPS = 200\n")

    def run(name: str, *argv: str) -> subprocess.CompletedProcess:
        path = os.pathsep.join([str(site), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        return subprocess.run([sys.executable, f"scripts/{name}.py", *argv], cwd=ROOT, check=True,
                              env={**os.environ, "PYTHONPATH": path})  # fmt: skip

    return run


@pytest.fixture
def tiny_set(tmp_path, monkeypatch, kd_cache):
    """A task set ``tiny-v0`` of four digits tasks (students of width 8 and 4, with 256 or 128 labels),
    two per split, registered with its sha256 as a shipped set is. The last has an edge draw of its own (digits
    split with another seed), so that the two splits' data differ, as the shipped set's do."""
    instances = []
    edge = dataclasses.replace(TINY_TASK.dataset, seed=1)
    for k, (width, labels) in enumerate([(8, 256), (4, 128), (4, 256), (8, 128)]):
        task = dataclasses.replace(TINY_TASK, student=ModelConfig("mlp", width=width, depth=1), transfer_size=labels,
                                   edge_dataset=edge if k == 3 else None)  # fmt: skip
        make_task(task, cache_dir=kd_cache)
        instances.append({"name": f"w{width}-l{labels}", "split": "train" if k < 2 else "test", "why": "a test",
                          "task": task.to_dict()})  # fmt: skip
    raw = json.dumps({"name": "tiny-v0", "description": "tiny", "instances": instances}).encode()
    (tmp_path / "tiny-v0.json").write_bytes(raw)
    monkeypatch.setattr(task_sets, "TASK_SETS_DIR", tmp_path)
    monkeypatch.setattr(task_sets, "TASK_SETS", {"tiny-v0": hashlib.sha256(raw).hexdigest()})
    return {"task_set": "tiny-v0", "batch_size": 32, "epochs": 2, "reward_set_size": 32, "cache_dir": str(kd_cache)}


# The machine kind (agents.common.leaderboard.machine_kind) on which the pinned episodes and the built N2N table
# were recorded, as "Linux x86_64, AMD EPYC, torch 2.14.1" before the kind named torch's CPU kernels. An AVX2
# host of that name gave other bits on 2026-12-07, so the recording host ran AVX-512 kernels (inferred from
# that, not read there). Tests exact only there are skipped elsewhere.
PINNED_MACHINE_KIND = "Linux x86_64, AMD EPYC, torch 2.14.1, AVX512"
