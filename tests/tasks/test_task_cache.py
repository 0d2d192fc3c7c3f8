"""Tasks: config round trips, and the disk cache of teachers and generated datasets."""

import dataclasses
import json

import pytest
import torch

import kd_envs.tasks.task as task_module
from kd_envs.tasks.datasets import DatasetConfig
from kd_envs.tasks.models import ModelConfig
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
from kd_envs.tasks.training import TrainConfig, accuracy

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
