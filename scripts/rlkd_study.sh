#!/usr/bin/env bash
# The RLKD study on TemperatureKD-v0's default task: RLKD over 5 training seeds (official entry, 10
# evaluation seeds) and three ablations (5 evaluation seeds each), all at the YAML's budget, then the
# report (accuracy-vs-epoch and temperature plots). No KD, constant T=4 and PPO have official entries
# already (scripts/evaluate.py --fixed ..., README). About 80 CPU-minutes; run lanes in parallel with
#   scripts/rlkd_study.sh official & scripts/rlkd_study.sh ablations; wait; scripts/rlkd_study.sh report
set -euo pipefail
PY=${PY:-.venv/bin/python}
SEEDS=(--seed 0 --seed 1 --seed 2 --seed 3 --seed 4)
RUNS=runs/TemperatureKD-v0

train_and_evaluate() {  # name, hyperparameter overrides (JSON), evaluation episodes
  local name=$1 overrides=$2 episodes=$3 tag=$4
  "$PY" scripts/train.py --algo rlkd "${SEEDS[@]}" --hyperparams "$overrides" --out "$RUNS/$name" --no-progress
  "$PY" scripts/evaluate.py --models "$RUNS/$name"/seed_* --name "$name" --episodes "$episodes" --tag "$tag"
}

case "${1:-all}" in
  official) train_and_evaluate rlkd '{}' 10 official ;;
  ablations)
    train_and_evaluate rlkd_no_calibration '{"reward_calibration": false, "state_updater": false}' 5 ablation
    train_and_evaluate rlkd_no_exploration '{"env_kwargs": {"exploration": "none"}}' 5 ablation
    train_and_evaluate rlkd_authors_exploration '{"env_kwargs": {"exploration": "entropy_mixup_authors"}}' 5 ablation
    ;;
  report) "$PY" scripts/rlkd_report.py ;;
  all) "$0" official; "$0" ablations; "$0" report ;;
  *) echo "usage: $0 [official|ablations|report|all]" >&2; exit 2 ;;
esac
