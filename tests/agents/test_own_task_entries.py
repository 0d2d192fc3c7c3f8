"""Leaderboard entries made on a task of your own: they record its factory and fingerprint, verify like any
other (OK, with a note that the task was rebuilt by its factory), and a tampered number, another teacher, a
factory missing here or a task recorded without a factory are each caught and named."""

import dataclasses
import json

from agents.common.commands.leaderboard import main as leaderboard_main
from agents.common.evaluation import fixed_policy_entry, save_entry, verify
from kd_envs.tasks import task_from_factory

ENV_ID = "TemperatureKD-v0"
SEEDS = (1000, 1001)


def make(tmp_path, task):
    entry = fixed_policy_entry("constant_t4", ENV_ID, {"task": task, "reward_set_size": 32}, SEEDS, tag="test",
                               progress=False)  # fmt: skip
    return entry, save_entry(entry, tmp_path)


def rewrite(path, change):
    entry = json.loads(path.read_text())
    change(entry)
    path.write_text(json.dumps(entry))


def test_an_entry_on_your_task_records_its_factory_and_verifies(tmp_path, own_tasks, fast_bootstrap, capsys):
    factory = f"{own_tasks}:digits"
    task = task_from_factory(factory)
    entry, path = make(tmp_path, task)  # made with the Task itself: recorded by its factory
    assert entry["env_kwargs"]["task"] == factory
    assert entry["task_fingerprint"] == task.fingerprint()
    result = verify(path, tmp_path, progress=False)
    assert result.status == "OK" and result.problems == [] and result.differences == []
    (note,) = result.notes
    assert factory in note and "rebuilt by importing that factory" in note
    assert leaderboard_main(["--verify", str(path), "--leaderboard-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK {path}") and f"note: task {factory!r} is a task of your own" in out


def test_tampering_with_an_entry_on_your_task_is_caught(tmp_path, own_tasks, fast_bootstrap):
    _, path = make(tmp_path, f"{own_tasks}:digits")
    original = path.read_text()

    rewrite(path, lambda e: e["runs"][0]["episodes"][0].update(student_test_accuracy=0.99))
    result = verify(path, tmp_path, progress=False)
    assert result.status == "MISMATCH"
    assert any("evaluation seed 1000: student_test_accuracy 0.99" in d for d in result.differences)

    path.write_text(original)  # another teacher behind the same entry
    rewrite(path, lambda e: e["env_kwargs"].update(task=f"{own_tasks}:other"))
    (problem,) = verify(path, tmp_path, progress=False).problems
    assert problem.startswith("task teacher_sha256: the entry's") and "differs from this machine's" in problem


def test_a_task_that_cannot_be_rebuilt_is_named_and_nothing_replays(tmp_path, own_tasks, fast_bootstrap, capsys):
    _, path = make(tmp_path, f"{own_tasks}:digits")
    rewrite(path, lambda e: e["env_kwargs"].update(task="module_not_here:digits"))
    result = verify(path, tmp_path, progress=False)
    (problem,) = result.problems
    assert result.status == "MISMATCH" and result.differences == []
    assert problem.startswith("the entry's task cannot be rebuilt here, so nothing was replayed: ")
    assert "cannot import module 'module_not_here'" in problem and "PYTHONPATH" in problem
    assert leaderboard_main(["--verify", str(path), "--leaderboard-dir", str(tmp_path)]) == 1
    assert "MISMATCH" in capsys.readouterr().out

    task = dataclasses.replace(task_from_factory(f"{own_tasks}:digits"), factory=None)
    entry, path = make(tmp_path, task)  # made without a factory: the entry names the task, nothing rebuilds it
    assert entry["env_kwargs"]["task"] == {"tensors": "digits", "factory": None}
    (problem,) = verify(path, tmp_path, progress=False).problems
    assert "a task made from tensors without a factory cannot be rebuilt from its record alone" in problem
