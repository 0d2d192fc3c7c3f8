"""The table study's report (``scripts/n2n_regret.py``): the table, the proxy's fidelity read off it, and the
searchers' regret (:mod:`agents.common.regret`) as a JSON summary, a markdown table and a figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.common.fidelity import table_fidelity
from agents.common.figures import save_figure
from agents.common.regret import BUDGETS, Landscape, compare, regret_curves, separated
from kd_envs.tasks.tables import StudentTable

KINDS = ("value", "final")
KIND_LABELS = {
    "value": "regret of the search objective (mean proxy reward over the table's proxy seeds)",
    "final": "regret after the final training (the reward with the test accuracy of the 30-epoch retraining)",
}


def table_summary(table: StudentTable) -> dict[str, Any]:
    """What the table holds and what it cost: students, networks, results, core-seconds."""
    students = list(table.students.values())
    valid = [s for s in students if not s.degenerate]
    networks = {table.code_of(table.architecture(s.code)) for s in valid}
    made = table.made
    return {
        "name": table.name,
        "teacher_parameters": table.teacher["parameters"],
        "teacher_val_accuracy": table.teacher["val_accuracy"],
        "teacher_test_accuracy": table.teacher["test_accuracy"],
        "students": len(students),
        "valid_students": len(valid),
        "networks": len(networks),
        "proxy_seeds": list(table.proxy_seeds),
        "final_seeds": list(table.final_seeds),
        "final_epochs": table.final_epochs,
        "networks_with_every_final_seed": sum(len(table.students[c].final) == len(table.final_seeds) for c in networks),
        "core_seconds": made.get("core_seconds"),
        "made": {k: made.get(k) for k in ("command", "commit", "machine") if k in made},
    }


def study(table: StudentTable, landscapes: Mapping[str, Landscape], searches: Mapping[str, Sequence[dict]],
          budgets: Sequence[int] = BUDGETS) -> dict[str, Any]:  # fmt: skip
    """The report's numbers: the table, the fidelity, and per reward option the landscape's optimum and, for
    each kind of regret, :func:`agents.common.regret.compare` with the pairs it separates."""
    out: dict[str, Any] = {"table": table_summary(table), "fidelity": table_fidelity(table), "rewards": {}}
    out["fidelity"].pop("students", None)
    for reward, land in landscapes.items():
        runs = searches.get(reward) or []
        entry: dict[str, Any] = {
            "env_kwargs": land.env_kwargs,
            "feasible_students": len(land.value),
            "optimum": {
                "value": land.optimum("value"),
                "best_value": land.best_value,
                "final": land.optimum("final"),
                "best_final": land.best_final,
            },  # fmt: skip
            "searches": {},
        }
        if runs:
            longest = min(len(s["codes"]) for s in runs)
            entry["students_per_search"] = longest
            for kind in KINDS:
                comparison = compare(regret_curves(runs, land, kind), [b for b in budgets if b <= longest])
                entry[kind] = {**comparison, "separated": separated(comparison)}
            entry["searches"] = {a: c for a, c in entry["value"]["searches"].items()}
        out["rewards"][reward] = entry
    return out


def _cell(r: Mapping[str, Any]) -> str:
    return f"{r['mean']:.4f} [{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]"


def study_lines(report: Mapping[str, Any]) -> list[str]:
    """The report as markdown: the table, the fidelity, then per reward and kind the mean regret per budget."""
    t, f = report["table"], report["fidelity"]
    cost = t.get("core_seconds") or {}
    lines = [
        f"**Table `{t['name']}`**: {t['students']} students ({t['valid_students']} valid, {t['networks']} distinct "
        f"networks) of a {t['teacher_parameters']:,}-parameter teacher; every network's proxy on seeds "
        f"{', '.join(map(str, t['proxy_seeds']))} and its {t['final_epochs']}-epoch final training on seed "
        f"{t['final_seeds'][0]} ({t['networks_with_every_final_seed']} best networks on seeds "
        f"{', '.join(map(str, t['final_seeds']))}). Built in "
        + ", ".join(f"{v / 3600:.2f} core-hours of {k} training" for k, v in cost.items())
        + ".",
        "",
        f"**Proxy fidelity** over the table's {f['accuracy']['students']} networks (the 5-epoch proxy's validation "
        "accuracy against the final training's test accuracy; the noise ceiling is the proxy against itself on "
        "another seed):",
        "",
        "| score | Kendall τ | Spearman ρ | top-10 precision | proxy vs proxy τ (ceiling) | proxy vs proxy ρ |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("accuracy", "n2n_reward"):
        r = f[name]
        lines.append(f"| {name} | {r['kendall_tau']:.3f} | {r['spearman_rho']:.3f} | {r['top_precision']:.2f} | "
                     f"{r['seed_kendall_tau']:.3f} | {r['seed_spearman_rho']:.3f} |")  # fmt: skip
    for reward, entry in report["rewards"].items():
        opt = entry["optimum"]
        lines += ["", f"**Reward `{reward}`** ({entry['feasible_students']} feasible valid students; optimum "
                  f"`{opt['value']}` with value {opt['best_value']:.4f}, after final training `{opt['final']}` "
                  f"with {opt['best_final']:.4f}).", ""]  # fmt: skip
        if "value" not in entry:
            lines.append("(no searches yet)")
            continue
        algos = list(entry["searches"])
        for kind in KINDS:
            comparison = entry[kind]
            searches = comparison["searches"][algos[0]]
            lines += [f"Mean {KIND_LABELS[kind]} [95% bootstrap CI] over {searches} searches per searcher; "
                      "*found* = share of searches whose incumbent is the optimum:", "", _header(algos)]  # fmt: skip
            for row in comparison["budgets"]:
                cells = [f"{_cell(row['regret'][a])}, found {row['regret'][a]['found_optimum']:.0%}" for a in algos]
                lines.append(f"| {row['budget']} | " + " | ".join(cells) + " |")
            lines.append("")
            lines += _improvement_lines(comparison, algos)
            lines.append("")
    return lines


def _header(algos: Sequence[str]) -> str:
    return "| students | " + " | ".join(f"`{a}`" for a in algos) + " |\n" + "|---" * (len(algos) + 1) + "|"


def _improvement_lines(comparison: Mapping[str, Any], algos: Sequence[str]) -> list[str]:
    """Probability of improvement over random search per budget, and the pairs with non-overlapping CIs."""
    others = [a for a in algos if a != "random_search"]
    if "random_search" not in algos or not others:
        return []
    lines = ["P(searcher's regret < random search's) [95% CI] (rliable's probability of improvement):", "",
             _header(others)]  # fmt: skip
    for row in comparison["budgets"]:
        cells = []
        for a in others:
            p = row["probability_of_improvement"][f"{a},random_search"]
            cells.append(f"{p['p']:.2f} [{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}]")
        lines.append(f"| {row['budget']} | " + " | ".join(cells) + " |")
    pairs = comparison["separated"]
    named = "; ".join(f"{p['budget']} students: `{p['better']}` < `{p['worse']}`" for p in pairs) or "none"
    lines += ["", f"Pairs separated (mean-regret CIs that do not overlap): {named}."]
    return lines


def plot_regret(landscapes: Mapping[str, Landscape], searches: Mapping[str, Sequence[dict]], path: Path) -> Path:
    """Mean regret against students proposed, with 95% bootstrap bands: a row per reward, a column per kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rewards = [r for r in landscapes if searches.get(r)]
    fig, axes = plt.subplots(len(rewards), 2, figsize=(11, 3.6 * len(rewards)), squeeze=False)
    rng = np.random.default_rng(0)
    for i, reward in enumerate(rewards):
        for j, kind in enumerate(KINDS):
            ax = axes[i][j]
            for algo, curves in regret_curves(searches[reward], landscapes[reward], kind).items():
                x = np.arange(1, curves.shape[1] + 1)
                idx = rng.integers(0, len(curves), size=(1000, len(curves)))
                boot = curves[idx].mean(axis=1)
                low, high = np.percentile(boot, [2.5, 97.5], axis=0)
                (line,) = ax.plot(x, curves.mean(axis=0), label=f"{algo} ({len(curves)})")
                ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2)
            ax.set_xscale("log")
            if any((line.get_ydata() > 0).any() for line in ax.get_lines()):
                # The gaps that matter are at the small regrets of late budgets.
                ax.set_yscale("log", nonpositive="clip")
            ax.set_xlabel("students proposed")
            ax.set_ylabel("mean regret")
            ax.set_title(f"reward {reward!r}: {kind}", fontsize=10)
            ax.grid(alpha=0.3)
        axes[i][0].legend(fontsize=8)
    fig.suptitle("Regret on the student table (mean over searches, 95% bootstrap band)")
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    plt.close(fig)
    return path
