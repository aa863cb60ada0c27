#!/usr/bin/env bash
# Every accuracy figure in README.md, from the real footage in ../shared/data.
# Usage: bash tools/reproduce_results.sh [RUNS_DIR] [EXPERIMENT...]    (default: all, into runs/)
# Figures land in RUNS_DIR/<experiment>/ (meta.json, evaluation/report.json or cv_report.json).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
data=${LRCN_DATA:-$here/../shared/data}
weights=${LRCN_WEIGHTS:-$here/../shared/pretrained/mobilenet_v2_1.0_imagenet_notop.weights.h5}
runs=${1:-runs}; shift || true
mkdir -p "$runs"

ucf_split=(--split-lists "$data/ucf101_9/splits/trainlist01.txt" "$data/ucf101_9/splits/testlist01.txt")
mnv2=(--backbone mobilenet_v2 --weights "$weights" --size 224 --lr 1e-3 --epochs 40 --patience 10)

run() {  # run NAME lrcn-train-arguments...
  local name=$1; shift
  if [ "${#selected[@]}" -gt 0 ] && [[ ! " ${selected[*]} " =~ " $name " ]]; then return; fi
  echo "== $name: lrcn train $*"
  lrcn train "$@" --out "$runs/$name" --quiet 2>"$runs/$name.log" | tee "$runs/$name.txt"
}
selected=("$@")

# ucf101_9, UCF101's official split 1: 324 training videos (groups 08-25), 126 test (01-07).
run ucf_mnv2_lstm        "$data/ucf101_9" "${ucf_split[@]}" "${mnv2[@]}"
run ucf_mnv2_lstm_steps  "$data/ucf101_9" "${ucf_split[@]}" "${mnv2[@]}" --per-timestep
run ucf_mnv2_single      "$data/ucf101_9" "${ucf_split[@]}" "${mnv2[@]}" --head single_frame
run ucf_seed             "$data/ucf101_9" "${ucf_split[@]}" --size 112 --epochs 12 --clips-per-video 2 --patience 4 --no-refit

# weizmann4, leave-one-subject-out (9 folds, 4 test videos each).
run weizmann_mnv2_lstm   "$data/weizmann4" --cv "${mnv2[@]}"
run weizmann_mnv2_single "$data/weizmann4" --cv "${mnv2[@]}" --head single_frame
run weizmann_seed        "$data/weizmann4" --cv --size 64 --epochs 15 --clips-per-video 8 --patience 5 --no-refit

# ps7, leave-one-person-out (3 folds, 9 test videos each).
run ps7_mnv2_lstm        "$data/ps7" --cv "${mnv2[@]}"
run ps7_mnv2_single      "$data/ps7" --cv "${mnv2[@]}" --head single_frame
run ps7_seed             "$data/ps7" --cv --size 112 --epochs 12 --clips-per-video 8 --patience 4 --no-refit

# Synthetic motion-only actions (7 classes, 300 videos each, 4 groups; group 04 tests).
if [ "${#selected[@]}" -eq 0 ] || [[ " ${selected[*]} " =~ " synth_mnv2_flatten " ]]; then
  [ -d "$runs/synth300" ] || lrcn synth "$runs/synth300" --videos-per-class 300 --frames 32 --size 64 --seed 1
fi
run synth_mnv2_flatten   "$runs/synth300" --test-groups 04 --backbone mobilenet_v2 --weights "$weights" \
    --pooling flatten --size 96 --clip-length 8 --lstm-units 128 --lr 1e-3 --epochs 20 --clips-per-video 2 \
    --no-flip --no-refit
