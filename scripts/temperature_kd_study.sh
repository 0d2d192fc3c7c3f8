#!/usr/bin/env bash
# The agents on TemperatureKD-v0's default task: PPO (SB3's, with InstancePolicy: one MLP per instance),
# RLKD with the paper's exploration, RLKD with the authors' purification, RLKD after the authors' warm-up
# (3 epochs at T = 4 inside reset, their 19 of 240 scaled to 40; trained and scored on that env); each seed trains once and is
# skipped when its model exists, so an interrupted study resumes. Lanes can run in parallel:
#   scripts/temperature_kd_study.sh rlkd & scripts/temperature_kd_study.sh ppo; wait
#   scripts/temperature_kd_study.sh evaluate
set -euo pipefail
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/TemperatureKD-v0}
SEEDS=${SEEDS:-0 1 2 3 4 5 6 7 8 9}
AUTHORS_SEEDS=${AUTHORS_SEEDS:-0 1 2 3 4}

train() {  # algo, name, hyperparameter overrides (JSON), env kwargs (JSON), seeds...
  local algo=$1 name=$2 overrides=$3 env_kwargs=$4; shift 4
  for seed in "$@"; do
    if [[ -f "$RUNS/$name/seed_$seed/model.zip" ]]; then continue; fi
    nice "$PY" scripts/train.py --algo "$algo" --seed "$seed" --hyperparams "$overrides" --env-kwargs "$env_kwargs" \
      --out "$RUNS/$name/seed_$seed" --no-progress
  done
}

evaluate() {  # name, seeds...
  local name=$1; shift
  local dirs=()
  for seed in "$@"; do dirs+=("$RUNS/$name/seed_$seed"); done
  nice "$PY" scripts/evaluate.py --models "${dirs[@]}" --name "$name" --tag official
}

case "${1:-}" in
  rlkd) train rlkd rlkd '{}' '{}' $SEEDS ;;
  ppo) train ppo ppo '{}' '{}' $SEEDS ;;
  rlkd_authors) train rlkd rlkd_authors '{"env_kwargs": {"exploration": "entropy_mixup_authors"}}' '{}' $AUTHORS_SEEDS ;;
  rlkd_warmup) train rlkd rlkd_warmup '{}' '{"warmup_epochs": 3}' $AUTHORS_SEEDS ;;
  evaluate)
    evaluate rlkd $SEEDS
    evaluate ppo $SEEDS
    evaluate rlkd_authors $AUTHORS_SEEDS
    evaluate rlkd_warmup $AUTHORS_SEEDS
    ;;
  *) echo "usage: $0 rlkd|ppo|rlkd_authors|rlkd_warmup|evaluate" >&2; exit 2 ;;
esac
