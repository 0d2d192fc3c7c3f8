"""Tasks: config round trips, and the disk cache of teachers, generated datasets and student results."""

import dataclasses
import io
import json
import multiprocessing
import os
import re
import time
import warnings

import numpy as np
import pytest
import torch

import kd_envs.tasks.task as task_module
from kd_envs.tasks.cache import (
    CorruptCacheError,
    CorruptCacheWarning,
    lock_path,
    read_verified,
    sidecar_path,
    write_verified,
)
from kd_envs.tasks.compression import DistillConfig, StudentEvaluator
from kd_envs.tasks.datasets import DatasetConfig
from kd_envs.tasks.models import ModelConfig, architecture_of
from kd_envs.tasks.task import (
    SHIPPED_TEACHERS_DIR,
    TASKS,
    TaskConfig,
    default_cache_dir,
    load_or_train_teacher,
    load_task_data,
    make_task,
    resolve_task,
    teacher_key,
    tensors_sha256,
)
from kd_envs.tasks.training import TrainConfig, accuracy, predict_logits

TINY = TaskConfig(
    dataset=DatasetConfig("digits", num_train=256, num_val=64, num_test=64),
    teacher=ModelConfig("mlp", width=16, depth=1),
    student=ModelConfig("mlp", width=8, depth=1),
    teacher_training=TrainConfig(epochs=2, batch_size=64),
)


def _no_training(*args, **kwargs):
    raise AssertionError("the teacher should have come from the cache")


def _equal_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- configs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [TINY, *TASKS.values()])
def test_task_config_round_trips_through_a_dict(config):
    assert TaskConfig.from_dict(config.to_dict()) == config
    assert TaskConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_task_config_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown fields \\['bogus'\\]"):
        TaskConfig.from_dict({**TINY.to_dict(), "bogus": 1})


def test_resolve_task():
    assert resolve_task("digits") is TASKS["digits"]
    assert resolve_task(TINY) is TINY
    assert resolve_task(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="task='nope'") as error:
        resolve_task("nope")
    assert all(repr(name) in str(error.value) for name in TASKS)


def test_default_cache_dir_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_GYM_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("KD_GYM_CACHE")
    assert default_cache_dir().parts[-2:] == (".cache", "kd_gym")


# --- teacher cache ------------------------------------------------------------------------------


def test_teacher_is_trained_once_then_loaded(tmp_path, monkeypatch):
    first = make_task(TINY, cache_dir=tmp_path)
    weights = list((tmp_path / "teachers").glob("*.pt"))
    records = list((tmp_path / "teachers").glob("*.json"))
    assert len(weights) == len(records) == 1 and weights[0].stem == records[0].stem
    record = json.loads(records[0].read_text())
    assert record == first.teacher_record and record["key"] == weights[0].stem
    assert 0.0 <= record["test_accuracy"] <= 1.0
    assert first.teacher_test_accuracy == pytest.approx(accuracy(first.teacher, first.data.x_test, first.data.y_test))
    assert record["parameters"] == (64 * 16 + 16) + (16 * 10 + 10)
    assert not first.teacher.training and not any(p.requires_grad for p in first.teacher.parameters())

    monkeypatch.setattr(task_module, "train_classifier", _no_training)
    second = make_task(TINY, cache_dir=tmp_path)
    assert _equal_weights(second.teacher, first.teacher)
    assert second.teacher_record == first.teacher_record
    # where the data lies is no part of the key
    third = make_task(TINY, cache_dir=tmp_path, data_root=str(tmp_path / "elsewhere"))
    assert third.config.dataset.root == str(tmp_path / "elsewhere")
    assert _equal_weights(third.teacher, first.teacher)


def test_teacher_seed_changes_the_key(tmp_path):
    first = make_task(TINY, cache_dir=tmp_path)
    other = make_task(dataclasses.replace(TINY, teacher_seed=1), cache_dir=tmp_path)
    assert other.teacher_record["key"] != first.teacher_record["key"]
    assert len(list((tmp_path / "teachers").glob("*.pt"))) == 2
    assert not _equal_weights(other.teacher, first.teacher)


def test_training_is_reproducible(tmp_path):
    a = make_task(TINY, cache_dir=tmp_path / "a")
    b = make_task(TINY, cache_dir=tmp_path / "b")
    assert a.teacher_record["key"] == b.teacher_record["key"]
    assert _equal_weights(a.teacher, b.teacher)


def test_build_student_uses_the_student_config(tmp_path):
    task = make_task(TINY, cache_dir=tmp_path)
    a = task.build_student(torch.Generator().manual_seed(0))
    b = task.build_student(torch.Generator().manual_seed(0))
    assert _equal_weights(a, b)
    logits, features = a(task.data.x_val[:5], return_features=True)
    assert logits.shape == (5, 10) and [f.shape for f in features] == [(5, 8)]


# --- dataset cache ------------------------------------------------------------------------------


def test_generated_dataset_is_cached(tmp_path, monkeypatch):
    config = DatasetConfig("mnist1d", num_train=40, num_val=10, num_test=10)
    first = load_task_data(config, tmp_path)
    files = list((tmp_path / "datasets").glob("*.npz"))
    assert len(files) == 1 and files[0].name.startswith("mnist1d-")

    def no_generation(config):
        raise AssertionError("the dataset should have come from the cache")

    monkeypatch.setattr(task_module, "load_dataset", no_generation)
    second = load_task_data(config, tmp_path)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        a, b = getattr(first, name), getattr(second, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert second.num_classes == first.num_classes == 10
    assert second.augment == first.augment

    with pytest.raises(AssertionError, match="from the cache"):  # another seed is another file
        load_task_data(dataclasses.replace(config, seed=1), tmp_path)


def test_files_on_disk_are_not_cached(tmp_path):
    data = load_task_data(DatasetConfig("digits", num_train=30, num_val=10, num_test=10), tmp_path)
    assert len(data.y_train) == 30
    assert not (tmp_path / "datasets").exists()


# --- cloud-edge transfer sets and shipped teachers --------------------------------------------------


def test_transfer_set_is_the_first_instances_and_the_teacher_is_shared(tmp_path, monkeypatch):
    full = make_task(TINY, cache_dir=tmp_path)
    monkeypatch.setattr(task_module, "train_classifier", _no_training)  # same teacher key: no retraining
    edge = make_task(dataclasses.replace(TINY, transfer_size=100), cache_dir=tmp_path)
    assert torch.equal(edge.data.x_train, full.data.x_train[:100]) and torch.equal(edge.data.y_train,
                                                                                   full.data.y_train[:100])  # fmt: skip
    assert torch.equal(edge.data.x_val, full.data.x_val) and torch.equal(edge.data.x_test, full.data.x_test)
    assert len(edge.teacher_data.y_train) == 256  # the teacher learned from all of it
    assert _equal_weights(edge.teacher, full.teacher)
    assert teacher_key(edge.config) == teacher_key(full.config)
    a, b = full.fingerprint(), edge.fingerprint()
    assert a["teacher_sha256"] == b["teacher_sha256"] and a["dataset_sha256"] == b["dataset_sha256"]
    assert (a["transfer_size"], b["transfer_size"]) == (256, 100)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "100", 257])
def test_transfer_size_is_validated(bad):
    with pytest.raises(ValueError, match=f"transfer_size={bad!r}" if bad != 257 else "has only 256"):
        dataclasses.replace(TINY, transfer_size=bad)


def test_tensors_sha256_depends_on_values_names_and_shapes():
    a = {"w": torch.arange(6, dtype=torch.float32).view(2, 3)}
    assert tensors_sha256(a) == tensors_sha256({"w": torch.arange(6, dtype=torch.float32).view(2, 3).clone()})
    assert tensors_sha256(a) != tensors_sha256({"w": torch.arange(6, dtype=torch.float32).view(3, 2)})
    assert tensors_sha256(a) != tensors_sha256({"v": a["w"]})
    b = {"w": a["w"].clone()}
    b["w"][0, 0] = 1e-30
    assert tensors_sha256(a) != tensors_sha256(b)


def test_default_task_teacher_is_shipped_and_checked(tmp_path, monkeypatch, mnist1d_cache):
    # The default task's teacher comes from the package, never from training or the user's cache.
    monkeypatch.setattr(task_module, "train_classifier", _no_training)
    config = TASKS["mnist1d-cloud-edge"]
    assert (SHIPPED_TEACHERS_DIR / f"{teacher_key(config)}.pt").is_file()
    teacher, record = load_or_train_teacher(config, load_task_data(config.dataset, mnist1d_cache), tmp_path)
    assert record["source"] == "shipped"
    assert tensors_sha256(teacher.state_dict()) == record["weights_sha256"]
    assert not (tmp_path / "teachers").exists()


def test_a_damaged_shipped_teacher_is_refused(tmp_path, monkeypatch, mnist1d_cache):
    config = TASKS["mnist1d-cloud-edge"]
    key = teacher_key(config)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    record = json.loads((SHIPPED_TEACHERS_DIR / f"{key}.json").read_text())
    state = torch.load(SHIPPED_TEACHERS_DIR / f"{key}.pt", weights_only=True)
    next(iter(state.values())).view(-1)[0] += 1.0
    torch.save(state, shipped / f"{key}.pt")
    (shipped / f"{key}.json").write_text(json.dumps(record))
    monkeypatch.setattr(task_module, "SHIPPED_TEACHERS_DIR", shipped)
    with pytest.raises(ValueError, match=f"shipped teacher .*{key}.pt: weights sha256"):
        load_or_train_teacher(config, load_task_data(config.dataset, mnist1d_cache), tmp_path)


# --- caches that cannot poison a run ------------------------------------------------------------
# Every cached file has a sha256 sidecar; a loaded teacher must also have finite weights and score its
# recorded test accuracy. A cached file that fails is reported by path (CorruptCacheWarning) and rebuilt.


def _teacher_files(cache_dir):
    key = teacher_key(TINY)
    return cache_dir / "teachers" / f"{key}.pt", cache_dir / "teachers" / f"{key}.json"


def _rebuilt_like(clean, task) -> bool:
    """``task`` has the teacher, record and data of ``clean`` (a build in an untouched cache)."""
    drop = lambda record: {k: v for k, v in record.items() if k != "train_seconds"}  # noqa: E731
    return (
        _equal_weights(task.teacher, clean.teacher)
        and drop(task.teacher_record) == drop(clean.teacher_record)
        and task.fingerprint() == clean.fingerprint()
    )


def _loads_cleanly(cache_dir, monkeypatch) -> None:
    """The repaired cache now loads without training and without a warning."""
    monkeypatch.setattr(task_module, "train_classifier", _no_training)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptCacheWarning)
        make_task(TINY, cache_dir=cache_dir)


def _set_nan(weights_path, count=16):
    state = torch.load(weights_path, weights_only=True)
    first = next(iter(state.values()))
    first.view(-1)[:count] = float("nan")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("checksum", ["stale", "rewritten"])
def test_a_teacher_with_nan_weights_is_reported_and_retrained(tmp_path, monkeypatch, checksum):
    # The case: 16 weights set to NaN were loaded silently, observations held NaN. With the
    # checksum rewritten to match, the finite-weights check still refuses the file.
    clean = make_task(TINY, cache_dir=tmp_path / "clean")
    make_task(TINY, cache_dir=tmp_path)
    weights_path, _ = _teacher_files(tmp_path)
    raw = _set_nan(weights_path)
    (write_verified if checksum == "rewritten" else lambda p, b: p.write_bytes(b))(weights_path, raw)
    problem = "16 non-finite weights \\(NaN or inf\\)" if checksum == "rewritten" else "sha256 .* truncated or altered"
    with pytest.warns(CorruptCacheWarning, match=f"{re.escape(str(weights_path))}: {problem}"):
        task = make_task(TINY, cache_dir=tmp_path)
    assert _rebuilt_like(clean, task)
    assert torch.isfinite(predict_logits(task.teacher, task.data.x_val)).all()
    _loads_cleanly(tmp_path, monkeypatch)

    # and an episode on that cache observes finite values only
    import gymnasium as gym

    import kd_envs  # noqa: F401 (registers the envs)

    (write_verified if checksum == "rewritten" else lambda p, b: p.write_bytes(b))(weights_path, raw)
    monkeypatch.undo()
    with pytest.warns(CorruptCacheWarning, match=re.escape(str(weights_path))):
        env = gym.make("TemperatureKD-v0", task=TINY, batch_size=32, epochs=1, reward_set_size=32,
                       cache_dir=str(tmp_path))  # fmt: skip
    obs, _ = env.reset(seed=0)
    assert np.isfinite(obs).all()
    obs, *_ = env.step(env.action_space.sample())
    assert np.isfinite(obs).all()


@pytest.mark.parametrize("file", ["weights", "record"])
@pytest.mark.parametrize("damage", ["empty", "truncated", "missing"])
def test_a_damaged_teacher_file_is_reported_and_retrained(tmp_path, monkeypatch, file, damage):
    # These raised OSError, EOFError or JSONDecodeError naming no file, and were never rebuilt.
    clean = make_task(TINY, cache_dir=tmp_path / "clean")
    make_task(TINY, cache_dir=tmp_path)
    path = _teacher_files(tmp_path)[file == "record"]
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(b"" if damage == "empty" else path.read_bytes()[: path.stat().st_size // 2])
    problem = {"empty": "empty \\(0 bytes\\)", "truncated": "sha256 .* truncated or altered",
               "missing": "missing \\(its checksum .* exists\\)"}[damage]  # fmt: skip
    with pytest.warns(CorruptCacheWarning, match=f"cache file {re.escape(str(path))}: {problem}; not used, rebuilding"):
        task = make_task(TINY, cache_dir=tmp_path)
    assert _rebuilt_like(clean, task)
    _loads_cleanly(tmp_path, monkeypatch)


@pytest.mark.parametrize("checksum", ["stale", "rewritten"])
def test_an_altered_teacher_record_is_detected(tmp_path, monkeypatch, checksum):
    clean = make_task(TINY, cache_dir=tmp_path / "clean")
    make_task(TINY, cache_dir=tmp_path)
    _, record_path = _teacher_files(tmp_path)
    record = json.loads(record_path.read_text())
    record["test_accuracy"] = 0.98
    raw = json.dumps(record, indent=2).encode()
    (write_verified if checksum == "rewritten" else lambda p, b: p.write_bytes(b))(record_path, raw)
    problem = "sha256 .* truncated or altered"
    if checksum == "rewritten":  # the checksum passes; the accuracy recomputed on the test split does not
        problem = "records test accuracy 0.98, but the teacher scores .* on the 64 test examples"
    with pytest.warns(CorruptCacheWarning, match=f"{re.escape(str(record_path))}: {problem}"):
        task = make_task(TINY, cache_dir=tmp_path)
    assert _rebuilt_like(clean, task) and task.teacher_test_accuracy != 0.98
    _loads_cleanly(tmp_path, monkeypatch)


def test_a_cache_written_before_checksums_is_adopted_once_verified(tmp_path, monkeypatch):
    first = make_task(TINY, cache_dir=tmp_path)
    weights_path, record_path = _teacher_files(tmp_path)
    sums = {p: sidecar_path(p).read_bytes() for p in (weights_path, record_path)}
    for p in sums:
        sidecar_path(p).unlink()  # as the cache was before checksums
    _loads_cleanly(tmp_path, monkeypatch)  # no training, no warning
    assert {p: sidecar_path(p).read_bytes() for p in sums} == sums
    assert _equal_weights(make_task(TINY, cache_dir=tmp_path).teacher, first.teacher)


def test_a_cache_written_before_checksums_that_fails_the_checks_is_retrained(tmp_path):
    clean = make_task(TINY, cache_dir=tmp_path / "clean")
    make_task(TINY, cache_dir=tmp_path)
    weights_path, record_path = _teacher_files(tmp_path)
    weights_path.write_bytes(_set_nan(weights_path, count=3))
    for p in (weights_path, record_path):
        sidecar_path(p).unlink()
    with pytest.warns(CorruptCacheWarning, match=f"{re.escape(str(weights_path))}: 3 non-finite weights"):
        task = make_task(TINY, cache_dir=tmp_path)
    assert _rebuilt_like(clean, task)


def test_a_shipped_teacher_with_nan_weights_or_an_altered_record_is_refused(tmp_path, monkeypatch, mnist1d_cache):
    config = TASKS["mnist1d-cloud-edge"]
    key = teacher_key(config)
    data = load_task_data(config.dataset, mnist1d_cache)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(task_module, "SHIPPED_TEACHERS_DIR", shipped)
    monkeypatch.setattr(task_module, "train_classifier", _no_training)  # never retrained over package data
    record = json.loads((SHIPPED_TEACHERS_DIR / f"{key}.json").read_text())
    (shipped / f"{key}.pt").write_bytes(_set_nan(SHIPPED_TEACHERS_DIR / f"{key}.pt"))
    (shipped / f"{key}.json").write_text(json.dumps(record))
    with pytest.raises(CorruptCacheError, match=f"shipped teacher .*{key}.pt: 16 non-finite weights .* damaged"):
        load_or_train_teacher(config, data, tmp_path)

    (shipped / f"{key}.pt").write_bytes((SHIPPED_TEACHERS_DIR / f"{key}.pt").read_bytes())
    (shipped / f"{key}.json").write_text(json.dumps({**record, "test_accuracy": 0.99}))
    with pytest.raises(CorruptCacheError, match=f"shipped teacher .*{key}.json: records test accuracy 0.99, but"):
        load_or_train_teacher(config, data, tmp_path)

    (shipped / f"{key}.pt").write_bytes(b"")
    with pytest.raises(CorruptCacheError, match=f"shipped teacher .*{key}.pt: empty"):
        load_or_train_teacher(config, data, tmp_path)
    assert not (tmp_path / "teachers").exists()


def test_a_teacher_within_one_test_example_of_its_record_is_accepted(tmp_path, monkeypatch):
    # One example of slack for another machine's kernels flipping a borderline prediction, no more.
    make_task(TINY, cache_dir=tmp_path)
    _, record_path = _teacher_files(tmp_path)
    record = json.loads(record_path.read_text())
    for shift, accepted in ((1, True), (2, False)):
        shifted = {**record, "test_accuracy": record["test_accuracy"] - shift / 64}
        write_verified(record_path, json.dumps(shifted).encode())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            make_task(TINY, cache_dir=tmp_path)
        assert (not any(issubclass(w.category, CorruptCacheWarning) for w in caught)) == accepted, shift


@pytest.mark.parametrize("damage", ["empty", "truncated", "no checksum"])
def test_a_damaged_dataset_file_is_reported_and_regenerated(tmp_path, damage):
    config = DatasetConfig("mnist1d", num_train=40, num_val=10, num_test=10)
    clean = load_task_data(config, tmp_path / "clean")
    load_task_data(config, tmp_path)
    (path,) = (tmp_path / "datasets").glob("*.npz")
    if damage == "no checksum":
        sidecar_path(path).unlink()
    else:
        path.write_bytes(b"" if damage == "empty" else path.read_bytes()[:1000])
    problem = {"empty": "empty", "truncated": "sha256 .* truncated or altered", "no checksum": "no checksum"}[damage]
    with pytest.warns(CorruptCacheWarning, match=f"{re.escape(str(path))}: {problem}"):
        data = load_task_data(config, tmp_path)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(data, name), getattr(clean, name)), name
    assert read_verified(path) is not None


def _student_result(evaluator, arch, distill):
    result = evaluator.evaluate(arch, distill, seed=0)
    return {k: v for k, v in result.items() if k not in ("train_seconds", "cached")}


@pytest.mark.parametrize("damage", ["empty", "truncated", "no checksum"])
def test_a_damaged_student_result_is_reported_and_trained_again(tmp_path, damage):
    task = make_task(TINY, cache_dir=tmp_path)
    arch = architecture_of(TINY.student, task.data.input_shape, task.data.num_classes)
    distill = DistillConfig(training=TrainConfig(epochs=1, batch_size=64))
    clean = _student_result(StudentEvaluator(task, cache_dir=tmp_path / "clean"), arch, distill)
    first = StudentEvaluator(task, cache_dir=tmp_path)
    assert _student_result(first, arch, distill) == clean
    (path,) = (tmp_path / "students").glob("*.json")
    if damage == "no checksum":
        sidecar_path(path).unlink()  # a result cached before checksums: nothing vouches for it
    else:
        path.write_bytes(b"" if damage == "empty" else path.read_bytes()[:20])
    problem = {"empty": "empty", "truncated": "sha256 .* truncated or altered", "no checksum": "no checksum"}[damage]
    evaluator = StudentEvaluator(task, cache_dir=tmp_path)
    with pytest.warns(CorruptCacheWarning, match=f"{re.escape(str(path))}: {problem}.*; not used"):
        assert evaluator.cached(arch, distill, 0) is None
    with pytest.warns(CorruptCacheWarning, match=f"{re.escape(str(path))}: {problem}.*; not used, rebuilding"):
        result = evaluator.evaluate(arch, distill, seed=0)
    assert not result["cached"] and _student_result(evaluator, arch, distill) == clean
    again = StudentEvaluator(task, cache_dir=tmp_path).evaluate(arch, distill, seed=0)  # repaired on disk
    assert again["cached"] and {k: again[k] for k in clean} == clean


def _make_tiny_task_in_another_process(cache_dir, trainings, barrier) -> None:
    """Spawned: make TINY's task, noting each teacher training in ``trainings`` (one line per training)."""
    torch.set_num_threads(1)
    train = task_module.train_classifier

    def noted(*args, **kwargs):
        with open(trainings, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.0)  # without the lock, the other process would be training too by now
        return train(*args, **kwargs)

    task_module.train_classifier = noted
    barrier.wait()
    make_task(TINY, cache_dir=cache_dir)


@pytest.mark.slow
def test_two_processes_that_need_the_same_teacher_train_it_once(tmp_path, monkeypatch):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    trainings = tmp_path / "trainings.txt"
    args = (tmp_path / "cache", trainings, barrier)
    processes = [context.Process(target=_make_tiny_task_in_another_process, args=args) for _ in range(2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0]
    assert len(trainings.read_text().splitlines()) == 1  # one trained, the other waited and loaded it
    weights_path, _ = _teacher_files(tmp_path / "cache")
    assert lock_path(weights_path).exists()
    clean = make_task(TINY, cache_dir=tmp_path / "clean")
    monkeypatch.setattr(task_module, "train_classifier", _no_training)
    assert _rebuilt_like(clean, make_task(TINY, cache_dir=tmp_path / "cache"))
