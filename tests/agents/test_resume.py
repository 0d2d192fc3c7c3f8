"""Resumable training: checkpoints, interrupts and resumes (agents.common.checkpoints, train_agent)."""

import json
import os
import signal

import numpy as np
import pytest
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback

from agents.common.checkpoints import MANIFEST, latest_checkpoint
from agents.common.commands.train import main as train_main
from agents.common.training import train_agent

# DQN on CartPole-v1, small enough for a few hundred steps in about a second; it updates at every step.
DQN_TINY = {"learning_starts": 50, "train_freq": 1, "gradient_steps": 1, "buffer_size": 1000, "batch_size": 16,
            "target_update_interval": 20, "policy_kwargs": {"net_arch": [16]}}  # fmt: skip
TOTAL, SAVE_FREQ, STOP_AT = 400, 150, 330


class StopAt(BaseCallback):
    """Interrupts the run at step ``step``: a raw KeyboardInterrupt, or a real SIGINT to this process."""

    def __init__(self, step: int, sigint: bool = False):
        super().__init__()
        self.step, self.sigint = step, sigint

    def _on_step(self) -> bool:
        if self.num_timesteps == self.step:
            if self.sigint:
                os.kill(os.getpid(), signal.SIGINT)
            else:
                raise KeyboardInterrupt
        return True


class Weights(BaseCallback):
    """Keeps the policy's weights when learn() starts."""

    def _on_training_start(self) -> None:
        self.start = {k: v.clone() for k, v in self.model.policy.state_dict().items()}

    def _on_step(self) -> bool:
        return True


def train(out, **kwargs):
    return train_agent("dqn", "CartPole-v1", 0, out, TOTAL, hyperparams=DQN_TINY, progress_bar=False,
                       tensorboard=False, save_freq=SAVE_FREQ, **kwargs)  # fmt: skip


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return train(tmp_path_factory.mktemp("uninterrupted"))


def test_resume_from_a_periodic_checkpoint_repeats_the_run_exactly(tmp_path, uninterrupted):
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, callbacks=[StopAt(STOP_AT)])
    assert not (tmp_path / "model.zip").exists()
    folder, manifest = latest_checkpoint(tmp_path / "checkpoints")
    # Due at 300, written at the first episode boundary after it: the resumed run repeats that reset.
    assert 2 * SAVE_FREQ <= manifest["num_timesteps"] < STOP_AT and manifest["episode_boundary"]
    assert set(manifest["files"]) == {"model.zip", "replay_buffer.pkl", "rng.pkl"}
    weights = Weights()
    resumed = train(tmp_path, resume=True, callbacks=[weights])
    saved = DQN.load(folder / "model.zip", device="cpu")
    assert same_weights(weights.start, saved.policy.state_dict())  # it went on from the checkpoint
    assert resumed.model.num_timesteps == uninterrupted.model.num_timesteps == TOTAL
    assert resumed.model._n_updates == uninterrupted.model._n_updates
    # Bit-identical to the run that was never interrupted: weights, optimizer moments, replay buffer.
    assert same_weights(resumed.model.policy.state_dict(), uninterrupted.model.policy.state_dict())
    a, b = resumed.model.policy.optimizer.state_dict(), uninterrupted.model.policy.optimizer.state_dict()
    assert all(torch.equal(a["state"][i][k], b["state"][i][k]) for i in a["state"] for k in ("exp_avg", "exp_avg_sq"))
    buffers = resumed.model.replay_buffer, uninterrupted.model.replay_buffer
    np.testing.assert_array_equal(buffers[0].observations, buffers[1].observations)
    np.testing.assert_array_equal(buffers[0].actions, buffers[1].actions)
    assert json.loads((tmp_path / "config.json").read_text())["total_timesteps"] == TOTAL


def test_sigint_checkpoints_at_the_next_update_then_resumes(tmp_path, uninterrupted, capsys):
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, callbacks=[StopAt(STOP_AT, sigint=True)])
    assert "--resume" in capsys.readouterr().out
    folder, manifest = latest_checkpoint(tmp_path / "checkpoints")
    assert manifest["num_timesteps"] == STOP_AT  # train_freq 1: the next update boundary is the next step
    weights = Weights()
    resumed = train(tmp_path, resume=True, callbacks=[weights])
    assert same_weights(weights.start, DQN.load(folder / "model.zip", device="cpu").policy.state_dict())
    assert resumed.model.num_timesteps == TOTAL
    # The first STOP_AT transitions are the uninterrupted run's; what follows is not, where the checkpoint
    # stood mid-episode (the episode in progress restarts from a reset).
    np.testing.assert_array_equal(resumed.model.replay_buffer.observations[:STOP_AT],
                                  uninterrupted.model.replay_buffer.observations[:STOP_AT])  # fmt: skip
    if not manifest["episode_boundary"]:
        assert not np.array_equal(resumed.model.replay_buffer.observations[STOP_AT:TOTAL],
                                  uninterrupted.model.replay_buffer.observations[STOP_AT:TOTAL])  # fmt: skip


def test_resume_without_a_checkpoint_starts_afresh_and_other_settings_fail(tmp_path, capsys):
    short = dict(DQN_TINY, learning_starts=10)
    train_agent("dqn", "CartPole-v1", 0, tmp_path, 40, hyperparams=short, progress_bar=False, tensorboard=False,
                save_freq=20, resume=True)  # fmt: skip
    assert "no complete checkpoint" in capsys.readouterr().out
    assert latest_checkpoint(tmp_path / "checkpoints") is not None
    with pytest.raises(ValueError, match="hyperparams.learning_rate: checkpoint 0.0023, now 0.001"):
        train_agent("dqn", "CartPole-v1", 0, tmp_path, 40, hyperparams={**short, "learning_rate": 1e-3},
                    progress_bar=False, tensorboard=False, resume=True)  # fmt: skip
    with pytest.raises(ValueError, match="seed: checkpoint 0, now 1"):
        train_agent("dqn", "CartPole-v1", 1, tmp_path, 40, hyperparams=short, progress_bar=False, tensorboard=False,
                    resume=True)  # fmt: skip


def test_a_half_written_checkpoint_is_never_used(tmp_path):
    train_agent("dqn", "CartPole-v1", 0, tmp_path, 90, hyperparams=dict(DQN_TINY, learning_starts=10),
                progress_bar=False, tensorboard=False, save_freq=20)  # fmt: skip
    folders = sorted((tmp_path / "checkpoints").glob("step_*"))
    assert len(folders) == 2  # older ones are removed
    newest, older = folders[-1], folders[-2]
    assert latest_checkpoint(tmp_path / "checkpoints")[0] == newest
    with (newest / "replay_buffer.pkl").open("ab") as f:
        f.write(b"torn")  # a file that does not match the manifest
    assert latest_checkpoint(tmp_path / "checkpoints")[0] == older
    (older / MANIFEST).unlink()  # written last: without it the folder is incomplete
    assert latest_checkpoint(tmp_path / "checkpoints") is None


def test_cli_save_freq_and_resume(tmp_path, capsys):
    args = ["--algo", "dqn", "--env", "CartPole-v1", "--timesteps", "60", "--no-progress", "--out", str(tmp_path),
            "--hyperparams", json.dumps(dict(DQN_TINY, learning_starts=10)), "--save-freq", "20"]  # fmt: skip
    train_main(args)
    assert latest_checkpoint(tmp_path / "checkpoints") is not None
    train_main([*args, "--resume"])
    assert "resuming from" in capsys.readouterr().out


@pytest.mark.parametrize("algo", ["n2n", "random_search"])
def test_interrupted_search_resumes_with_its_records(tmp_path, tiny_n2n_kwargs, algo):
    """A search interrupted after its first update resumes from the checkpoint with the students it had
    recorded; its budget counts them, and it proposes the students the uninterrupted search did."""

    def search(out, **kwargs):
        return train_agent(algo, "N2NCompress-v0", 0, out, env_kwargs=tiny_n2n_kwargs,
                           hyperparams={"n_students": 7}, progress_bar=False, tensorboard=False, save_freq=1,
                           **kwargs)  # fmt: skip

    class StopAtEpisode(BaseCallback):
        def _on_step(self) -> bool:
            if self.model._episode_num == 6:
                raise KeyboardInterrupt
            return True

    search(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path / "b", callbacks=[StopAtEpisode()])
    folder, manifest = latest_checkpoint(tmp_path / "b" / "checkpoints")
    recorded = json.loads((folder / "search.json").read_text())
    assert 0 < recorded["episodes"] < 7 and manifest["episode_boundary"]
    search(tmp_path / "b", resume=True)
    a, b = (json.loads((tmp_path / d / "search.json").read_text()) for d in ("a", "b"))
    assert b["episodes"] == 7 and b["history"][: recorded["episodes"]] == recorded["history"]

    def students(summary):
        return [(h["architecture_summary"], h["reward"], h["timesteps"]) for h in summary["history"]]

    assert students(b) == students(a) and b["unique_students"] == a["unique_students"]
