"""RLKD report on TemperatureKD-v0: the entries' final test accuracies side by side, the student's test
accuracy after every epoch, and the temperatures RLKD gives over training; writes
leaderboard/TemperatureKD-v0-rlkd.png and leaderboard/TemperatureKD-v0-rlkd.json.

    python scripts/rlkd_report.py                       # after scripts/rlkd_study.sh's runs
    python scripts/rlkd_report.py --seeds 1000 --agents 2   # quicker traces
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import matplotlib
import numpy as np
import torch
from tqdm.auto import tqdm

import kd_envs  # noqa: F401
from agents.common.evaluation import EVALUATION_SEEDS, trace_episode
from agents.common.leaderboard import LEADERBOARD_DIR, load_entries
from agents.common.training import load_agent
from agents.temperature.specs import FIXED_POLICIES, fixed_policy

ENV_ID = "TemperatureKD-v0"
FIXED = ("no_kd", "constant_t1", "constant_t4", "constant_t8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entry", default="rlkd__official", help="the RLKD entry (<name>__<tag>) whose agents trace")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(EVALUATION_SEEDS[:2]), help="evaluation seeds")
    parser.add_argument("--agents", type=int, default=5, help="trace the entry's first N agents")
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    entries = {p.stem.split("__", 1)[1]: e for p, e in load_entries(args.leaderboard_dir) if e["env_id"] == ENV_ID}
    if args.entry not in entries:
        parser.error(f"no entry {ENV_ID}__{args.entry}.json in {args.leaderboard_dir}/entries")
    rlkd = entries[args.entry]

    def comparable(entry: dict) -> bool:
        """Scored on the RLKD entry's env (a fixed policy's own overrides aside; quick entries are not)."""
        kind, name = entry["agent"]["kind"], entry["agent"]["name"]
        overrides = fixed_policy(name).env_overrides if kind == "fixed" and name in FIXED_POLICIES else {}
        return {k: v for k, v in entry["env_kwargs"].items() if k not in overrides} == rlkd["env_kwargs"]

    entries = {key: e for key, e in entries.items() if comparable(e)}

    policies = {name: (fixed_policy(name), fixed_policy(name).env_overrides) for name in FIXED}
    for run in rlkd["runs"][: args.agents]:
        agent = load_agent(args.leaderboard_dir / run["model"])
        policies[f"rlkd seed {run['training_seed']}"] = (agent.model, {})
    traces: dict[str, list[dict]] = {}
    with tqdm(total=len(policies) * len(args.seeds), desc="tracing", unit="episode") as bar:
        for name, (policy, overrides) in policies.items():
            env = gym.make(ENV_ID, **{**rlkd["env_kwargs"], **overrides})
            traces[name] = []
            for seed in args.seeds:
                traces[name].append(trace_episode(env, policy, seed))
                bar.update()
            env.close()

    summary = {key: {"iqm": e["summary"]["iqm"], "ci95": e["summary"]["iqm_ci95"], "mean": e["summary"]["mean"],
                     "std": e["summary"]["std"], "runs": e["summary"]["runs"],
                     "evaluation_seeds": len(e["evaluation_seeds"])}
               for key, e in sorted(entries.items(), key=lambda kv: kv[1]["summary"]["iqm"])}  # fmt: skip
    out_json = args.leaderboard_dir / f"{ENV_ID}-rlkd.json"
    curves = {name: np.mean([t["test_accuracy"] for t in ts], axis=0).round(4).tolist() for name, ts in traces.items()}
    # Per RLKD agent, the percentiles of its temperatures in each epoch (over the traced seeds).
    percentiles = {
        name: [np.percentile(np.concatenate([t["temperatures"][epoch] for t in ts]), [5, 25, 50, 75, 95])
               .round(3).tolist() for epoch in range(len(ts[0]["temperatures"]))]
        for name, ts in traces.items() if name.startswith("rlkd")
    }  # fmt: skip
    out_json.write_text(json.dumps({"entries": summary, "seeds": args.seeds, "test_accuracy_per_epoch": curves,
                                    "rlkd_temperature_percentiles_per_epoch": percentiles}, indent=1))  # fmt: skip
    out_png = args.leaderboard_dir / f"{ENV_ID}-rlkd.png"
    plot(summary, curves, percentiles, out_png)
    for key, s in summary.items():
        print(f"{key:40s} IQM {s['iqm']:.4f} [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}]  mean {s['mean']:.4f} ± "
              f"{s['std']:.4f}  ({s['runs']} runs x {s['evaluation_seeds']} eval seeds)")  # fmt: skip
    print(f"wrote {out_png} and {out_json}")


def plot(summary: dict, curves: dict, percentiles: dict, path: Path) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_bar, ax_acc, ax_t) = plt.subplots(1, 3, figsize=(17, 4.8))
    names = list(summary)
    iqm = np.array([summary[n]["iqm"] for n in names])
    ci = np.array([summary[n]["ci95"] for n in names])
    colors = ["tab:red" if n.startswith("rlkd") else "tab:gray" for n in names]
    ax_bar.barh(names, iqm, xerr=[iqm - ci[:, 0], ci[:, 1] - iqm], color=colors, capsize=3)
    ax_bar.set_xlim(min(ci[:, 0]) - 0.02, max(ci[:, 1]) + 0.01)
    ax_bar.set_xlabel("student test accuracy, IQM [95% CI]")
    ax_bar.set_title("final accuracy per entry")
    for name, curve in curves.items():
        style = dict(color="tab:red", alpha=0.5, lw=1) if name.startswith("rlkd") else dict(lw=2)
        ax_acc.plot(np.arange(1, len(curve) + 1), curve, label=name, **style)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("student test accuracy")
    ax_acc.set_title("accuracy vs epoch (mean over traced seeds)")
    ax_acc.legend(fontsize=7)
    for (name, agent), color in zip(percentiles.items(), plt.cm.tab10.colors):
        p = np.array(agent)
        epochs = np.arange(1, len(p) + 1)
        ax_t.fill_between(epochs, p[:, 0], p[:, 4], alpha=0.15, color=color)
        ax_t.plot(epochs, p[:, 2], color=color, label=f"{name} (median, 5-95%)")
    for t, label in ((1.0, "T=1"), (4.0, "T=4")):
        ax_t.axhline(t, ls="--", lw=1, color="gray")
        ax_t.text(1, t, label, va="bottom", ha="left", fontsize=8)
    ax_t.set_ylim(0, 10)
    ax_t.set_xlabel("epoch")
    ax_t.set_ylabel("instance temperature")
    ax_t.set_title("RLKD's temperatures over training")
    ax_t.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
