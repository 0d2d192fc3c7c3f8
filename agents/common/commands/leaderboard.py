"""Render leaderboard/README.md and its plots from the entries, or verify an entry by re-running it.

kd-gym leaderboard                     # render
kd-gym leaderboard --prune             # delete stored models no entry refers to, then render
kd-gym leaderboard --verify leaderboard/entries/TemperatureKD-v0__constant_t4__quick.json
kd-gym leaderboard --verify leaderboard/entries/TemperatureKD-v0__best_constant__official.json --deep

--verify first checks each entry without replaying it: its schema, its metric (the env's score metric),
the official rule (tag "official", at least 5 runs, the protocol's evaluation seeds, a clean commit, a
model_sha256 on every run of a trained agent), a recorded selection against its own validation table
(the chosen value is the table's best), the sha256 of its stored models and the config.json beside each
(algorithm, training seed apart from the evaluation seeds, timesteps, env id and kwargs, hyperparameters
as the entry states them). Then it replays the entry on the torch thread count the entry records
("torch_threads"; 1 where it records none); --deep also re-runs a recorded best-constant selection with
its grid and seeds. Every file is reported by path (OK, CONSISTENT, MISMATCH with the problems, or
ERROR) and the next one is checked; the exit status is the number of entries that failed.

An entry made on a task of your own records the task's factory ("module:function", Task.from_tensors'
factory=): --verify imports and calls it, checks the teacher's and the data's sha256 against the entry and
replays; a note says so. Where the factory cannot be imported here (its module is not on the path) or the
entry records a task made without a factory, it says the task cannot be rebuilt, by name, and fails.

A replay is exact on the machine kind that made the entry (recorded as "machine"; --record-machine
writes this machine's kind, with a "machine_note" saying how it was added, into each entry that records
none and replayed exactly here). On another kind it is
CONSISTENT only if every recorded per-episode number is within 0.002 of the re-run's and no number's
differences have a direction (a paired t-interval of the mean difference that holds 0: the score's at
95%, the other numbers' at 95% together); a uniform shift is a MISMATCH, however small above 1e-6.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
from pathlib import Path

import torch

from agents.common.evaluation import record_machine, verify
from agents.common.leaderboard import LEADERBOARD_DIR, git_commit, render, unreferenced_models


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=formatter)
    parser.add_argument("--verify", metavar="ENTRY", nargs="+", help="entry JSON file(s) to re-run")
    parser.add_argument("--deep", action="store_true",
                        help="with --verify: also re-run a recorded selection (best_constant's grid on its seeds)")
    parser.add_argument("--leaderboard-dir", type=Path, default=LEADERBOARD_DIR,
                        help="the folder holding entries/ and models/ (default: %(default)s)")  # fmt: skip
    parser.add_argument("--prune", action="store_true",
                        help="delete the stored models no entry refers to (after entries were re-made), then render")
    parser.add_argument("--record-machine", action="store_true",
                        help="with --verify: record this machine's kind in each entry that lacks one and replayed "
                             "exactly (OK) here")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads while rendering; --verify replays each entry on the count it records")
    args = parser.parse_args(argv)
    if args.deep and not args.verify:
        parser.error("--deep re-runs selections of the entries given to --verify")
    if args.record_machine and not args.verify:
        parser.error("--record-machine records the machine kind in the entries given to --verify")
    if args.prune and args.verify:
        parser.error("--prune renders the board; run it apart from --verify")
    # What --record-machine's notes say (git runs only when they are written).
    when, commit = (datetime.date.today().isoformat(), git_commit()) if args.record_machine else (None, None)
    torch.set_num_threads(args.threads)
    if not args.verify:
        if args.prune:
            for folder in unreferenced_models(args.leaderboard_dir):
                shutil.rmtree(folder)
                print(f"removed {folder}: no entry refers to it")
        readme, plots = render(args.leaderboard_dir)
        print(f"wrote {readme} and {', '.join(map(str, plots))}")
        return 0
    failed = 0
    for path in args.verify:  # every file is checked, whatever happened to the one before
        try:
            result = verify(path, args.leaderboard_dir, deep=args.deep)
        except Exception as error:  # noqa: BLE001  (reported by path, then the next file)
            failed += 1
            print(f"ERROR {path}: {type(error).__name__}: {error}")
            continue
        notes = "".join(f"\n  note: {note}" for note in result.notes)
        if result.status == "OK":
            recorded = args.record_machine and record_machine(path, result, when, commit)
            print(f"OK {path}: every recorded number matches exactly"
                  + (", its selection's re-run too" if result.reran_selection else "")
                  + ("; recorded this machine kind in it" if recorded else "") + notes)
            continue
        failed += result.status == "MISMATCH"
        print(f"{result.status} {path}:\n  " + "\n  ".join(result.lines()) + notes)
    if len(args.verify) > 1:
        print(f"{failed} of {len(args.verify)} entries failed")
    return min(failed, 125)  # the exit status counts the failed entries


if __name__ == "__main__":
    sys.exit(main())
