"""A task of your own (``Task.from_tensors``), its factory ``"module:function"`` and its JSON form, and the
device a task trains on (``resolve_device``): what is kept, what is checked, and errors that name the bad
argument."""

import dataclasses

import pytest
import torch
from torch import nn

from kd_envs.tasks import (
    DatasetSplits,
    ModelConfig,
    Task,
    TaskConfig,
    TaskFactoryError,
    TrainConfig,
    build_model,
    resolve_device,
    task_from_factory,
    task_json,
    task_or_config,
    train_classifier,
)
from kd_envs.tasks.task import tensors_sha256


def splits(n_train=64, n_val=16, n_test=16, features=8, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_val + n_test
    x, y = torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)
    y[:classes] = torch.arange(classes)  # every class present in train
    return {"train": (x[:n_train], y[:n_train]), "val": (x[n_train : n_train + n_val], y[n_train : n_train + n_val]),
            "test": (x[n_train + n_val :], y[n_train + n_val :])}  # fmt: skip


def trained_teacher(data, seed=0):
    teacher = build_model(ModelConfig("mlp", 16, 1), (8,), 3, torch.Generator().manual_seed(seed))
    full = DatasetSplits(*data["train"], *data["val"], *data["test"], num_classes=3)
    train_classifier(teacher, full, TrainConfig(epochs=2, batch_size=16), torch.Generator().manual_seed(seed))
    return teacher


@pytest.fixture(scope="module")
def data():
    return splits()


@pytest.fixture(scope="module")
def teacher(data):
    return trained_teacher(data)


def test_a_task_from_tensors_keeps_your_data_and_a_frozen_copy_of_your_teacher(data, teacher):
    before = tensors_sha256(teacher.state_dict())
    task = Task.from_tensors(**data, teacher=teacher, student=ModelConfig("mlp", 4, 1), transfer_size=40,
                             name="mine", factory="my_tasks:mine")  # fmt: skip
    assert task.config is None and task.name == "mine" and task.factory == "my_tasks:mine"
    assert task.student_training == TrainConfig()  # the default schedule
    assert task.teacher is not teacher and teacher.training is False  # train_classifier leaves eval mode
    assert all(p.requires_grad for p in teacher.parameters())  # yours is left as it was
    assert not any(p.requires_grad for p in task.teacher.parameters()) and not task.teacher.training
    assert tensors_sha256(task.teacher.state_dict()) == before
    assert len(task.data.y_train) == 40 and len(task.teacher_data.y_train) == 64  # the teacher learned from all
    assert torch.equal(task.data.x_val, data["val"][0]) and task.data.num_classes == 3
    fingerprint = task.fingerprint()
    assert fingerprint["teacher_sha256"] == before and fingerprint["teacher_source"] == "tensors"
    assert fingerprint["transfer_size"] == 40 and fingerprint["teacher_key"] == f"tensors-{before[:16]}"
    with torch.no_grad():
        expected = (teacher(data["test"][0]).argmax(1) == data["test"][1]).float().mean().item()
    assert fingerprint["teacher_test_accuracy"] == expected
    # The dataset's hash covers every split: another test split is another fingerprint.
    other = dict(data, test=(data["test"][0] + 1.0, data["test"][1]))
    moved = Task.from_tensors(**other, teacher=teacher, student=ModelConfig("mlp", 4, 1), transfer_size=40)
    assert moved.fingerprint()["dataset_sha256"] != fingerprint["dataset_sha256"]
    assert "Task(name='mine'" in repr(task) and "tensor(" not in repr(task)


def test_students_are_drawn_from_the_generator_alone(data, teacher):
    def student():
        return nn.Sequential(nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))

    for spec in (ModelConfig("mlp", 4, 1), student):
        task = Task.from_tensors(**data, teacher=teacher, student=spec)
        state = torch.random.get_rng_state()
        a = task.build_student(torch.Generator().manual_seed(3)).state_dict()
        b = task.build_student(torch.Generator().manual_seed(3)).state_dict()
        c = task.build_student(torch.Generator().manual_seed(4)).state_dict()
        assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is untouched
        assert tensors_sha256(a) == tensors_sha256(b) != tensors_sha256(c)


def test_a_named_task_keeps_its_config_as_the_source_of_its_student(tiny_kwargs, kd_cache):
    from kd_envs.tasks import make_task

    task = make_task(tiny_kwargs["task"], cache_dir=kd_cache)
    assert task.student is task.config.student and task.student_training is task.config.student_training
    assert task.to("cpu") is task  # nothing to move: no copy
    assert task.data_key() == task.config.dataset.key_parts() | {"root": None}


def bad(data, **changes):
    return {**data, **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train": [torch.zeros(4, 8)]}, r"train is a list; expected a pair \(inputs, labels\)"),
        ({"val": (torch.zeros(4, 8, dtype=torch.int64), torch.zeros(4, dtype=torch.int64))}, "val inputs have dtype"),
        ({"test": (torch.zeros(4, 8), torch.zeros(4))}, "test labels have dtype torch.float32"),
        ({"test": (torch.zeros(4, 8), torch.zeros(3, dtype=torch.int64))}, "test has 4 inputs and 3 labels"),
        ({"val": (torch.zeros(4, 9), torch.zeros(4, dtype=torch.int64))}, r"val inputs have shape \(9,\)"),
        ({"val": (torch.full((4, 8), float("nan")), torch.zeros(4, dtype=torch.int64))}, "val inputs hold NaN"),
        ({"val": (torch.zeros(4, 8), torch.tensor([0, 1, 2, -1]))}, r"labels range over \[-1, 2\]"),
        ({"num_classes": 2}, r"labels range over \[0, 2\]; expected labels in \[0, num_classes=2\)"),
        ({"transfer_size": 65}, r"transfer_size=65; expected an integer in \[1, 64\]"),
        ({"transfer_size": True}, "transfer_size=True"),
        ({"factory": "no colon"}, "factory='no colon'; expected 'module:function'"),
        ({"name": ""}, "name=''"),
        ({"student_training": {"epochs": 3}}, "student_training="),
        ({"teacher": "a teacher"}, "teacher is a str; expected a trained torch.nn.Module"),
        ({"teacher": nn.Linear(8, 4)}, r"teacher maps 2 training inputs to \(2, 4\); expected logits of shape"),
        ({"teacher": nn.Linear(5, 3)}, r"teacher fails on 2 training inputs \(RuntimeError"),
        ({"student": ModelConfig("resnet", depth=8)}, r"student fails on 2 training inputs \(ValueError: resnet"),
        ({"student": lambda: "not a module"}, "student fails on 2 training inputs.*not a torch.nn.Module"),
        ({"student": 3}, "student=3; expected a kd_envs.tasks.ModelConfig or a function"),
    ],
)
def test_bad_input_gives_a_clear_error_naming_it(data, teacher, changes, message):
    kwargs = {"teacher": teacher, "student": ModelConfig("mlp", 4, 1), **changes}
    with pytest.raises(ValueError, match=f"Task.from_tensors: {message}"):
        Task.from_tensors(**bad(data, **{k: v for k, v in kwargs.items() if k in data}),
                          **{k: v for k, v in kwargs.items() if k not in data})  # fmt: skip


def test_a_teacher_giving_nan_is_refused(data):
    teacher = nn.Linear(8, 3)
    with torch.no_grad():
        teacher.bias.fill_(float("nan"))
    with pytest.raises(ValueError, match="teacher gives NaN or inf logits"):
        Task.from_tensors(**data, teacher=teacher, student=ModelConfig("mlp", 4, 1))


FACTORIES = '''
import functools
import torch
from kd_envs.tasks import ModelConfig, Task

@functools.cache
def small():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 8, generator=g), torch.arange(40) % 3
    return Task.from_tensors(train=(x[:24], y[:24]), val=(x[24:32], y[24:32]), test=(x[32:], y[32:]),
                             teacher=torch.nn.Linear(8, 3), student=ModelConfig("mlp", 4, 1), name="small")

def not_a_task():
    return 3

def broken():
    raise RuntimeError("no data here")
'''


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "own_task_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "own_task_factories"


def test_a_factory_makes_the_task_and_is_what_its_json_records(factories):
    task = task_from_factory(f"{factories}:small")
    assert isinstance(task, Task) and task.name == "small" and task.factory == f"{factories}:small"
    assert task_or_config(f"{factories}:small").fingerprint() == task.fingerprint()
    assert task_json(task) == f"{factories}:small"
    assert task_json(dataclasses.replace(task, factory=None)) == {"tensors": "small", "factory": None}
    config = TaskConfig()
    assert task_json(config) == config.to_dict() and task_or_config(config.to_dict()) == config
    assert task_or_config("digits") is not None and task_json("digits") == "digits"


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("no_such_module_here:small", "cannot import module 'no_such_module_here' .*put its module on the path"),
        ("{m}:missing", "module '{m}' has no function 'missing'"),
        ("{m}:not_a_task", "the factory returned a int; expected a kd_envs.tasks.Task"),
        ("{m}:broken", "the factory raised RuntimeError: no data here"),
        ({"tensors": "small", "factory": None}, "a task made from tensors without a factory cannot be rebuilt"),
    ],
)
def test_a_task_that_cannot_be_made_says_why(factories, task, message):
    task = task.format(m=factories) if isinstance(task, str) else task
    with pytest.raises(TaskFactoryError, match=message.format(m=factories)):
        task_or_config(task)


def test_resolve_device_knows_the_cpu_and_names_what_is_missing():
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))
    for device, message in [("bogus", "device='bogus': not a device torch knows"), ("meta", "device='meta'; expected"),
                            (3, "device=3; expected"), (True, "device=True; expected")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            resolve_device(device)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match="device='cuda:7'"):
        resolve_device("cuda:7") if count <= 7 else pytest.skip("this machine has 8 CUDA devices")
    if count == 0:
        with pytest.raises(ValueError, match="device='cuda': this machine has no CUDA device"):
            resolve_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="device='mps': MPS is not available"):
            resolve_device("mps")


def test_teacher_training_on_the_cpu_device_is_the_default(data):
    first, second = (build_model(ModelConfig("mlp", 16, 1), (8,), 3, torch.Generator().manual_seed(0))
                     for _ in range(2))  # fmt: skip
    full = DatasetSplits(*data["train"], *data["val"], *data["test"], num_classes=3)
    config = TrainConfig(epochs=2, batch_size=16)
    a = train_classifier(first, full, config, torch.Generator().manual_seed(1))
    b = train_classifier(second, full, config, torch.Generator().manual_seed(1), device="cpu")
    assert a == b and tensors_sha256(first.state_dict()) == tensors_sha256(second.state_dict())
    with pytest.raises(ValueError, match="device='bogus'"):
        train_classifier(second, full, config, torch.Generator().manual_seed(1), device="bogus")
