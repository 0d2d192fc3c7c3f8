"""Interference measurement (AEI, per-context returns, phase-end evaluation), the runs' summaries and
the study's report, the entries scored on every context, and the study script at a tiny budget."""

import json
import runpy
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import QRDQN
from stable_baselines3 import DQN

import kd_envs  # noqa: F401
from agents.common.evaluation import save_entry, trained_agents_entry, verify_entry
from agents.common.interference import (
    ContextEvaluationCallback,
    ContextInterferenceCallback,
    InterferenceCallback,
    context_env_kwargs,
    context_interference_matrix,
    forgetting,
    recent_samples,
    td_errors,
)
from agents.common.reports.interference import (
    markdown_tables,
    mean_curve,
    report,
    selection_row,
    summarise_run,
    train_interference_run,
    training_return_auc,
)
from agents.iq.iq import IQ

ENV_ID = "InterferenceCartPole-v0"
# Small DQN: trains every 16 steps from step 64, 4 gradient steps each.
SMALL = dict(learning_starts=64, train_freq=16, gradient_steps=4, batch_size=16, buffer_size=1000,
             target_update_interval=50, policy_kwargs={"net_arch": [16]})  # fmt: skip


def small_dqn(seed=0, env_kwargs=None, algo=DQN, **overrides):
    env = gym.make(ENV_ID, **(env_kwargs or {}))
    return algo("MlpPolicy", env, seed=seed, **{**SMALL, **overrides})


def test_td_errors_match_a_hand_computation_for_dqn_and_qrdqn():
    for algo in (DQN, QRDQN):
        model = small_dqn(algo=algo, learning_starts=1000)
        model.learn(200)  # fills the buffer, no training
        samples = recent_samples(model, 32)
        with th.no_grad():
            if algo is DQN:
                q, q_next = model.q_net(samples.observations), model.q_net_target(samples.next_observations)
            else:
                q = model.quantile_net(samples.observations).mean(dim=1)
                q_next = model.quantile_net_target(samples.next_observations).mean(dim=1)
        expected = [
            float(samples.rewards[i] + (1 - samples.dones[i]) * model.gamma * q_next[i].max()
                  - q[i, int(samples.actions[i])])
            for i in range(32)
        ]  # fmt: skip
        np.testing.assert_allclose(td_errors(model, samples).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_recent_samples_are_the_latest_transitions_and_leave_numpy_global_state_alone():
    model = small_dqn(learning_starts=1000)
    model.learn(100)
    state = np.random.get_state()[1].copy()
    samples = recent_samples(model, 10)
    assert np.array_equal(np.random.get_state()[1], state)
    pos = model.replay_buffer.pos
    expected = model.replay_buffer.observations[(pos - 1 - np.arange(10)) % 1000, 0]
    np.testing.assert_array_equal(samples.observations.numpy(), expected)
    assert recent_samples(model, pos + 1) is None  # only pos transitions stored


def test_aei_is_the_change_of_squared_td_error_over_one_training_call():
    model = small_dqn()
    model.learn(200)
    callback = InterferenceCallback(n_samples=32)
    callback.init_callback(model)
    callback.on_rollout_end()
    samples = recent_samples(model, 32)  # what the callback measures on: the latest transitions
    before = td_errors(model, samples).pow(2)
    model.train(gradient_steps=4, batch_size=16)
    callback.on_rollout_start()
    (_, aei), = callback.aei
    expected = float((td_errors(model, samples).pow(2) - before).mean())
    assert aei == pytest.approx(expected) and aei != 0.0


def test_the_callbacks_do_not_change_training_and_record_aei_for_every_update():
    plain = small_dqn(seed=3)  # SB3 seeds the global generators when a model is built: build, then learn
    plain.learn(400)
    measured = small_dqn(seed=3)
    interference = InterferenceCallback(n_samples=32)
    evaluation = ContextEvaluationCallback(ENV_ID, {}, eval_freq=200, seeds=(2000,), contexts=[0])
    measured.learn(400, callback=[interference, evaluation])
    for a, b in zip(plain.policy.parameters(), measured.policy.parameters()):
        assert th.equal(a, b)
    # Training calls after step 64, one per 16-step rollout: steps 80, 96, ..., 400.
    assert [t for t, _ in interference.aei] == list(range(80, 401, 16))
    assert all(np.isfinite(a) for _, a in interference.aei)
    assert [p["timesteps"] for p in evaluation.curve] == [200, 400]


def test_per_context_training_returns_follow_the_drift_schedule():
    model = small_dqn(env_kwargs={"drift": "cyclic", "phase_length": 2}, learning_starts=10_000)
    callback = InterferenceCallback()
    model.learn(600, callback=callback)
    contexts = [c for _, c, _ in callback.episodes]
    assert len(contexts) >= 7
    assert contexts[:7] == [0, 0, 1, 1, 2, 2, 0]
    assert all(r > 0 for _, _, r in callback.episodes)


def test_every_phase_end_evaluates_every_context():
    kwargs = {"drift": "cyclic", "phase_length": 150, "phase_unit": "steps"}
    model = small_dqn(env_kwargs=kwargs, learning_starts=10_000)
    callback = ContextEvaluationCallback(ENV_ID, kwargs, eval_freq=10_000, seeds=(2000, 2001))
    model.learn(700, callback=callback)
    phases = callback.record()["phases"]
    assert [row["phase"] for row in phases] == list(range(len(phases)))
    assert len(phases) >= 4  # each phase lasts 150 steps and at most one episode more
    assert [row["context"] for row in phases[:4]] == [0, 1, 2, 0]
    assert all(len(row["returns"]) == 3 for row in phases)
    assert phases[-1]["timesteps"] == model.num_timesteps  # the end of training (704: rollouts of 16)
    # An untrained agent is scored by its greedy episodes: the same numbers as a separate evaluation.
    env = gym.make(ENV_ID, **context_env_kwargs(kwargs, 1))
    from agents.common.evaluation import run_episode

    expected = np.mean([run_episode(env, model, s)["return"] for s in (2000, 2001)])
    assert phases[-1]["returns"][1] == pytest.approx(expected)


def test_forgetting_is_the_drop_from_each_contexts_best_so_far():
    matrix = [[10, 50, 5], [40, 20, 5], [30, 60, 1]]
    np.testing.assert_array_equal(forgetting(matrix), [[0, 0, 0], [0, 30, 0], [10, 0, 4]])
    with pytest.raises(ValueError, match="phase x context"):
        forgetting([])


def test_summarise_run_by_hand():
    record = {"aei": [[80, 1.0], [96, 3.0], [112, -1.0], [128, 1.0]],
              "curve": [{"timesteps": 200, "returns": [10.0, 20.0]}, {"timesteps": 400, "returns": [30.0, 50.0]}],
              "phases": [{"phase": 0, "context": 0, "timesteps": 250, "returns": [40.0, 10.0]},
                         {"phase": 1, "context": 1, "timesteps": 400, "returns": [20.0, 30.0]}]}  # fmt: skip
    summary = summarise_run(record)
    assert summary["aei_mean"] == pytest.approx(1.0) and summary["aei_mean_second_half"] == pytest.approx(0.0)
    assert summary["final_eval_return"] == 40.0 and summary["curve_std_second_half"] == 0.0
    assert summary["final_forgetting"] == pytest.approx(10.0)  # (40 - 20 + 0) / 2
    assert summary["phase_contexts"] == [0, 1]


def test_training_return_auc_by_hand():
    # Spans of 25 steps up to 100: (0, 25] holds returns 10 and 20; (25, 50] none (keeps 15); (50, 75] 40;
    # (75, 100] 60 -> (15 + 15 + 40 + 60) / 4.
    episodes = [[10, 0, 10.0], [25, 0, 20.0], [70, 1, 40.0], [100, 0, 60.0]]
    assert training_return_auc(episodes, windows=4) == pytest.approx((15 + 15 + 40 + 60) / 4)
    assert training_return_auc([]) is None


def _record(curve_returns, aei, phase_returns, auc):
    """A run's record as train_interference_run writes it, reduced to what the report reads."""
    record = {"aei": [[100 * (i + 1), a] for i, a in enumerate(aei)],
              "curve": [{"timesteps": 100 * (i + 1), "returns": r} for i, r in enumerate(curve_returns)],
              "phases": [{"phase": p, "context": p % 2, "timesteps": 100 * (p + 1), "returns": r}
                         for p, r in enumerate(phase_returns)]}  # fmt: skip
    record["summary"] = {**summarise_run(record), "training_return_auc": auc}
    return record


def test_mean_curve_is_over_runs_and_cut_to_the_shortest():
    runs = [_record([[10.0, 20.0], [30.0, 30.0], [50.0, 50.0]], [1.0, 3.0], [[1.0, 2.0]], 1.0),
            _record([[20.0, 20.0], [10.0, 10.0]], [3.0, 5.0, 7.0], [[1.0, 2.0]], 2.0)]  # fmt: skip
    t, mean, std = mean_curve(runs, "curve")
    np.testing.assert_array_equal(t, [100, 200])
    np.testing.assert_allclose(mean, [17.5, 20.0])
    np.testing.assert_allclose(std, [2.5, 10.0])
    t, mean, _ = mean_curve(runs, "aei")
    np.testing.assert_allclose(mean, [2.0, 4.0])


def test_report_writes_the_numbers_per_seed_and_the_table(tmp_path):
    drift = [[40.0, 10.0], [20.0, 30.0]]
    records = {"conflict_visible": {"dqn": [_record([[10.0, 20.0]] * 2, [1.0, 2.0], drift, 5.0),
                                            _record([[30.0, 40.0]] * 2, [3.0, 4.0], drift, 7.0)]}}  # fmt: skip
    greedy = {"iqm": 25.0, "iqm_ci95": [20.0, 30.0], "mean": 25.0, "std": 5.0}
    auc = {"iqm": 6.0, "iqm_ci95": [5.0, 7.0], "mean": 6.0, "std": 1.0}
    scores = {"conflict_visible": {"dqn": {"greedy": greedy, "training_return_auc": auc, "entry": "e.json"}}}
    stem = tmp_path / "Interference-study"
    report(records, stem, scores)
    numbers = json.loads(Path(f"{stem}.json").read_text())["conflict_visible"]["dqn"]
    assert numbers["final_eval_return"] == [15.0, 35.0] and numbers["training_return_auc"] == [5.0, 7.0]
    assert numbers["final_forgetting"] == [10.0, 10.0] and numbers["entry"]["entry"] == "e.json"
    assert Path(f"{stem}.png").is_file() and Path(f"{stem}-conflict_visible-forgetting.png").is_file()
    table = Path(f"{stem}.md").read_text()
    assert table == markdown_tables(json.loads(Path(f"{stem}.json").read_text()))
    assert "| conflict_visible | dqn | 25.0 [20.0, 30.0] | 25.0 ± 5.0 | 6.0 [5.0, 7.0] | 6.0 ± 1.0 | – | 10 |" in table


def test_selection_row_averages_the_candidates_runs():
    summaries = [{"curve_mean_second_half": 10.0, "training_return_auc": 4.0, "final_eval_return": 1.0},
                 {"curve_mean_second_half": 20.0, "training_return_auc": 6.0, "final_eval_return": 3.0}]  # fmt: skip
    row = selection_row({"anchor_update_interval": 2000}, summaries)
    assert row == {"params": {"anchor_update_interval": 2000}, "score": 15.0, "score_per_seed": [10.0, 20.0],
                   "training_return_auc": 5.0, "final_eval_return": 2.0}  # fmt: skip


def _snapshot(model):
    return {k: v.clone() for k, v in model.policy.state_dict().items()}, model._n_updates


@pytest.mark.parametrize("algo", [DQN, QRDQN, IQ])
def test_context_interference_matrix_leaves_the_agent_as_it_was(algo):
    extra = {"cluster_warmup": 64, "n_contexts": 2} if algo is IQ else {}
    model = algo("MlpPolicy", gym.make("CartPole-v1"), seed=0, **{**SMALL, **extra})
    model.learn(600)
    weights, updates = _snapshot(model)
    optimizer = {k: v.clone() for k, v in model.policy.optimizer.state_dict()["state"][0].items()}
    np.random.seed(7)
    expected_draw = np.random.rand()
    np.random.seed(7)
    result = context_interference_matrix(model, n_contexts=3, gradient_steps=8, eval_size=32, seed=0)
    assert np.random.rand() == expected_draw  # the global generator is given back
    matrix = np.array(result["matrix"])
    assert matrix.shape == (3, 3) and np.isfinite(matrix).all()
    assert sum(result["sizes"]) == model.replay_buffer.pos and min(result["sizes"]) >= 32
    assert all(b > 0 for b in result["td_loss_before"])
    after, after_updates = _snapshot(model)
    assert after_updates == updates and all(th.equal(weights[k], after[k]) for k in weights)
    restored = model.policy.optimizer.state_dict()["state"][0]
    assert all(th.equal(optimizer[k], restored[k]) for k in optimizer)
    assert model.replay_buffer.__class__.__name__.endswith("ReplayBuffer")
    # Reproducible: the same seed gives the same matrix.
    again = context_interference_matrix(model, n_contexts=3, gradient_steps=8, eval_size=32, seed=0)
    assert again["matrix"] == result["matrix"]
    assert context_interference_matrix(model, n_contexts=3, eval_size=10_000) is None


def test_context_interference_matrix_by_hand_for_one_context():
    """M[i, j] recomputed: k-means as specified, then 4 gradient steps on context i's rows with the
    sampler's generator, on a copy of the agent."""
    import copy

    from sklearn.cluster import KMeans
    from torch.nn import functional as F

    model = DQN("MlpPolicy", gym.make("CartPole-v1"), seed=0, **SMALL)
    model.learn(500)
    twin = copy.deepcopy(model)
    result = context_interference_matrix(model, n_contexts=2, gradient_steps=4, eval_size=16, seed=3)

    buffer = twin.replay_buffer
    stored = buffer.pos  # rollouts of 16 steps: 512
    states = buffer.observations[:stored, 0].astype(np.float64)
    rng = np.random.default_rng(3)
    mean, std = states.mean(axis=0), states.std(axis=0) + 1e-8
    fit_rows = rng.choice(stored, size=stored, replace=False)
    labels = KMeans(n_clusters=2, n_init=10, random_state=3).fit((states[fit_rows] - mean) / std).predict(
        (states - mean) / std)  # fmt: skip
    rows = [np.flatnonzero(labels == c) for c in range(2)]
    evaluation = [buffer._get_samples(rng.choice(r, size=16, replace=False)) for r in rows]

    def loss(samples):
        errors = td_errors(twin, samples)
        return float(F.smooth_l1_loss(errors, th.zeros_like(errors)))

    before = [loss(e) for e in evaluation]
    sampler = np.random.default_rng([3, 1])
    for _ in range(4):
        data = buffer._get_samples(sampler.choice(rows[1], size=twin.batch_size))
        with th.no_grad():
            target = data.rewards + (1 - data.dones) * twin.gamma * twin.q_net_target(data.next_observations).max(
                dim=1).values.reshape(-1, 1)  # fmt: skip
        q = twin.q_net(data.observations).gather(1, data.actions.long())
        step = F.smooth_l1_loss(q, target)
        twin.policy.optimizer.zero_grad()
        step.backward()
        th.nn.utils.clip_grad_norm_(twin.policy.parameters(), twin.max_grad_norm)
        twin.policy.optimizer.step()
    expected = [(loss(e) - b) / b for e, b in zip(evaluation, before)]
    np.testing.assert_allclose(result["matrix"][1], expected, rtol=1e-4, atol=1e-6)
    assert result["td_loss_before"] == pytest.approx(before)


# A tiny IQ: contexts fitted at step 64, an anchor of its own, distillation on from the fit.
TINY_IQ = dict(cluster_warmup=64, n_contexts=2, anchor_update_interval=100, distillation_weight=0.5)


def test_iq_context_interference_matrix_reads_the_heads_it_trains_by_hand():
    """IQ's row M[i, :] recomputed: each sample trained and read on its own stored head ω(s_t),
    bootstrapped from the target network's head ω(s_{t+1}), L_KD on the other heads against the anchor;
    the target network, the anchor and the stored contexts stay fixed while it trains. The measured
    loss is the ``td`` term IQ's own train() minimises."""
    import copy

    from sklearn.cluster import KMeans
    from torch.nn import functional as F

    from agents.common.interference import _huber_td_loss

    model = IQ("MlpPolicy", gym.make("CartPole-v1"), seed=0, **{**SMALL, **TINY_IQ})
    model.learn(500)
    assert model.policy.context_model.kmeans.fitted and model.current_distillation_weight == 0.5
    twin = copy.deepcopy(model)
    result = context_interference_matrix(model, n_contexts=2, gradient_steps=4, eval_size=16, seed=3)

    buffer = twin.replay_buffer
    stored = buffer.pos
    states = buffer.observations[:stored, 0].astype(np.float64)
    rng = np.random.default_rng(3)
    mean, std = states.mean(axis=0), states.std(axis=0) + 1e-8
    fit_rows = rng.choice(stored, size=stored, replace=False)
    labels = KMeans(n_clusters=2, n_init=10, random_state=3).fit((states[fit_rows] - mean) / std).predict(
        (states - mean) / std)  # fmt: skip
    rows = [np.flatnonzero(labels == c) for c in range(2)]
    evaluation = [buffer._get_samples(rng.choice(r, size=16, replace=False)) for r in rows]
    anchor = twin.policy.q_net_anchor
    nets = {"target": twin.q_net_target, "anchor": anchor, "contexts": twin.policy.context_model}
    fixed = {name: {k: v.clone() for k, v in net.state_dict().items()} for name, net in nets.items()}
    stored_contexts = (buffer.contexts.copy(), buffer.next_contexts.copy())

    def own_head_terms(data):
        """(Q^{ω(s)}(s, a), r + γ(1 − d)·max_a' Q_target^{ω(s')}(s', a'), every head's Q(s, a), the anchor's)."""
        batch = th.arange(len(data.actions))
        q = twin.q_net(data.observations)  # (B, k, A)
        with th.no_grad():
            next_q = twin.q_net_target(data.next_observations)[batch, data.next_contexts].max(dim=1).values
            target = data.rewards + (1 - data.dones) * twin.gamma * next_q.reshape(-1, 1)
            anchored = anchor(data.observations)[batch, :, data.actions.long().flatten()]
        taken = q[batch, :, data.actions.long().flatten()]  # (B, k)
        return taken[batch, data.contexts].reshape(-1, 1), target, taken, anchored

    def loss(samples):
        with th.no_grad():
            q, target, _, _ = own_head_terms(samples)
        return float(F.smooth_l1_loss(q, target))

    before = [loss(e) for e in evaluation]
    for e, b in zip(evaluation, before):
        assert _huber_td_loss(twin, e) == pytest.approx(b, rel=1e-6)
        assert twin.losses(e, 0.5)["td"].item() == pytest.approx(b, rel=1e-6)
    sampler = np.random.default_rng([3, 1])
    for _ in range(4):
        data = buffer._get_samples(sampler.choice(rows[1], size=twin.batch_size))
        q, target, taken, anchored = own_head_terms(data)
        others = 1.0 - F.one_hot(data.contexts, 2).float()
        distillation = (F.smooth_l1_loss(taken, anchored, reduction="none") * others).sum(dim=1).mean()
        step = F.smooth_l1_loss(q, target) + 0.5 * distillation
        twin.policy.optimizer.zero_grad()
        step.backward()
        th.nn.utils.clip_grad_norm_(twin.policy.parameters(), twin.max_grad_norm)
        twin.policy.optimizer.step()
    expected = [(loss(e) - b) / b for e, b in zip(evaluation, before)]
    np.testing.assert_allclose(result["matrix"][1], expected, rtol=1e-4, atol=1e-6)
    assert result["td_loss_before"] == pytest.approx(before)

    # train() moves the online network only: not the target, the anchor, the context model or the stored contexts.
    assert isinstance(model.replay_buffer, type(buffer))  # the real buffer is back
    model.train(gradient_steps=4, batch_size=model.batch_size)
    for name, net in (("target", model.q_net_target), ("anchor", model.policy.q_net_anchor),
                      ("contexts", model.policy.context_model)):  # fmt: skip
        for key, value in net.state_dict().items():
            assert th.equal(value, fixed[name][key]), (name, key)
    assert np.array_equal(model.replay_buffer.contexts, stored_contexts[0])
    assert np.array_equal(model.replay_buffer.next_contexts, stored_contexts[1])


def test_iq_diagonal_falls_where_its_training_lowers_its_td_loss():
    """A few hundred CartPole steps of IQ: 64 steps on each context lower that context's own TD loss, as
    DQN's do, so the measurement does not hide IQ's learning. The study's near-zero diagonal comes later
    in training, from IQ's training there (docs/studies/interference.md)."""
    diagonals = {}
    for algo, extra in ((DQN, {}), (IQ, TINY_IQ)):
        model = algo("MlpPolicy", gym.make("CartPole-v1"), seed=0, **{**SMALL, **extra})
        model.learn(500)
        result = context_interference_matrix(model, n_contexts=3, gradient_steps=64, eval_size=32, seed=0)
        diagonals[algo] = np.diag(result["matrix"])
    assert (diagonals[IQ] < -0.05).all() and (diagonals[DQN] < -0.03).all(), diagonals


@pytest.mark.parametrize("algo", [DQN, IQ])
def test_context_interference_callback_measures_without_changing_training(algo):
    extra = TINY_IQ if algo is IQ else {}
    plain = small_dqn(seed=4, env_kwargs=None, algo=algo, **extra)
    plain.learn(600)
    measured = small_dqn(seed=4, algo=algo, **extra)
    callback = ContextInterferenceCallback(every=200, gradient_steps=4, eval_size=16)
    measured.learn(600, callback=callback)
    for a, b in zip(plain.policy.parameters(), measured.policy.parameters()):
        assert th.equal(a, b)
    record = callback.record()
    assert [m["timesteps"] for m in record["measurements"]] == [200, 400, 600]
    mean = np.mean([m["matrix"] for m in record["measurements"]], axis=0)
    np.testing.assert_allclose(record["matrix"], mean)
    assert record["interference"] == pytest.approx(mean[~np.eye(3, dtype=bool)].mean())
    with pytest.raises(ValueError, match="n_contexts=1"):
        ContextInterferenceCallback(every=10, n_contexts=1)


@pytest.mark.slow
def test_drift_entries_are_scored_on_every_context_and_verify(tmp_path):
    kwargs = {"drift": "cyclic", "phase_length": 150, "phase_unit": "steps"}
    dirs = []
    for seed in (0, 1):
        out = tmp_path / "runs" / f"seed_{seed}"
        hyperparams = {**SMALL, "learning_starts": 100}
        train_interference_run("dqn", ENV_ID, seed, out, kwargs, 300, hyperparams, eval_freq=150, eval_seeds=(2000,))
        dirs.append(out)
        record = json.loads((out / "interference.json").read_text())
        assert record["summary"]["aei_mean"] is not None and len(record["phases"]) >= 2
    settings = [context_env_kwargs(kwargs, c) for c in range(3)]
    board = tmp_path / "board"
    entry = trained_agents_entry(dirs, (1000, 1001), "pytest", "dqn_cyclic", board, progress=False,
                                 evaluation_env_kwargs=settings, extra_files=("interference.json",))  # fmt: skip
    episodes = entry["runs"][0]["episodes"]
    assert [e["context"] for e in episodes] == [0, 0, 1, 1, 2, 2]
    assert entry["evaluation_env_kwargs"] == settings
    assert (board / entry["runs"][0]["model"] / "interference.json").is_file()
    path = save_entry(entry, board)
    assert verify_entry(path, board, progress=False) == []
    data = json.loads(path.read_text())
    data["runs"][0]["episodes"][3]["return"] += 1
    path.write_text(json.dumps(data))
    assert any("evaluation seed 1001: return" in m for m in verify_entry(path, board, progress=False))


@pytest.mark.slow  # about 30 s on two cores: four tiny runs, their entries and the plots
def test_study_script_runs_end_to_end_at_a_tiny_budget(tmp_path, run_script):
    board = tmp_path / "board"
    argv = ["--seeds", "0", "--algos", "dqn", "iq", "--timesteps", "1200", "--no-minatar", "--tag", "pytest",
            "--settings", "cartpole", "conflict_visible",
            "--hyperparams", json.dumps({"train_freq": 64, "gradient_steps": 4, "buffer_size": 6000,
                                         "learning_starts": 200}),
            "--eval-freq", "600", "--matrix-eval-size", "32", "--jobs", "1", "--runs", str(tmp_path / "runs"),
            "--leaderboard-dir", str(board)]  # fmt: skip
    run_script("interference_study", *argv)
    names = sorted(p.name for p in (board / "entries").glob("*.json"))
    assert names == ["CartPole-v1__dqn__pytest.json", "CartPole-v1__iq__pytest.json",
                     f"{ENV_ID}__dqn_conflict_visible__pytest.json", f"{ENV_ID}__iq_conflict_visible__pytest.json"]
    assert (board / "Interference-study.png").is_file() and (board / "Interference-context-matrices.png").is_file()
    table = (board / "Interference-study.md").read_text()
    assert "| cartpole | iq |" in table and "| conflict_visible | dqn |" in table
    numbers = json.loads((board / "Interference-study.json").read_text())
    assert set(numbers) == {"cartpole", "conflict_visible"} and set(numbers["conflict_visible"]) == {"dqn", "iq"}
    assert len(numbers["cartpole"]["iq"]["context_interference"]) == 1  # measured on the single-task setting
    assert "context_interference" not in numbers["conflict_visible"]["iq"]
    entry = json.loads((board / "entries" / "CartPole-v1__iq__pytest.json").read_text())
    assert entry["training_return_auc"]["runs"] == 1
    assert verify_entry(board / "entries" / "CartPole-v1__iq__pytest.json", board, progress=False) == []

    # --reuse-entries: a fresh runs folder filled from the entries' stored models gives the same entries
    # without training, and a missing entry is named.
    before = {p.name: json.loads(p.read_text()) for p in (board / "entries").glob("*dqn*.json")}
    fresh = tmp_path / "fresh_runs"
    argv_reuse = [a if a != str(tmp_path / "runs") else str(fresh) for a in argv]
    argv_reuse[argv_reuse.index("--algos") + 1: argv_reuse.index("--algos") + 3] = ["dqn"]
    run_script("interference_study", *argv_reuse, "--reuse-entries", "dqn")
    assert not (fresh / "cartpole" / "dqn" / "seed_0" / "tb").exists()  # taken, not trained
    for name, old in before.items():
        new = json.loads((board / "entries" / name).read_text())
        assert [r["episodes"] for r in new["runs"]] == [r["episodes"] for r in old["runs"]], name
        assert [r["model_sha256"] for r in new["runs"]] == [r["model_sha256"] for r in old["runs"]], name
    script = runpy.run_path(str(Path(__file__).parents[2] / "scripts" / "interference_study.py"))
    with pytest.raises(FileNotFoundError, match="no entry .*CartPole-v1__qrdqn__pytest"):
        script["restore_runs"]("CartPole-v1", "qrdqn", "pytest", [tmp_path / "other" / "seed_0"], board)
    with pytest.raises(ValueError, match="no run of training seed 7"):
        script["restore_runs"]("CartPole-v1", "dqn", "pytest", [tmp_path / "other" / "seed_7"], board)
    # A stored model that is not the entry's is refused, not copied.
    dqn = json.loads((board / "entries" / "CartPole-v1__dqn__pytest.json").read_text())
    stored = board / dqn["runs"][0]["model"] / "model.zip"
    stored.write_bytes(stored.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="sha256"):
        script["restore_runs"]("CartPole-v1", "dqn", "pytest", [tmp_path / "other" / "seed_0"], board)
