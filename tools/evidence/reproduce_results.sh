#!/usr/bin/env bash
# Every accuracy figure in README.md, from the real footage in ../shared/data.
# Usage: bash tools/evidence/reproduce_results.sh [RUNS_DIR] [EXPERIMENT...]    (default: all, into runs/)
# Figures land in RUNS_DIR/<experiment>/ (meta.json, evaluation/report.json or cv_report.json).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
data=${LRCN_DATA:-$here/../shared/data}
weights=${LRCN_WEIGHTS:-$here/../shared/pretrained/mobilenet_v2_1.0_imagenet_notop.weights.h5}
runs=${1:-runs}; shift || true
mkdir -p "$runs"

ucf_split=(--split-lists "$data/ucf101_9/splits/trainlist01.txt" "$data/ucf101_9/splits/testlist01.txt")
mnv2=(--backbone mobilenet_v2 --weights "$weights" --size 224 --lr 1e-3 --epochs 40 --patience 10)

# The pooling head: L2 chosen among three on the validation groups; trained to convergence
# (a linear read-out under an L2 penalty needs no early stop), larger batches of more clips:
# about 3,000 steps a model (ucf101_9, with 12 times the videos of ps7, takes fewer epochs).
pool=(--head pool --l2 0.001,0.01,0.1 --dropout 0.5 0.5 --batch-size 32 --clips-per-video 32 --epochs 120 --patience 120)

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
# Without refit (the model kept from the epoch its validation groups chose), three seeds for the spread.
for seed in 0 1 2; do
  run ucf_mnv2_lstm_norefit_s$seed "$data/ucf101_9" "${ucf_split[@]}" "${mnv2[@]}" --no-refit --seed $seed
done
run ucf_mnv2_single_norefit "$data/ucf101_9" "${ucf_split[@]}" "${mnv2[@]}" --head single_frame --no-refit
run ucf_mnv2_pool        "$data/ucf101_9" "${ucf_split[@]}" "${mnv2[@]}" "${pool[@]}" --clips-per-video 8 --epochs 40 --patience 40
for seed in 1 2; do
  run ucf_mnv2_pool_s$seed "$data/ucf101_9" "${ucf_split[@]}" "${mnv2[@]}" "${pool[@]}" --clips-per-video 8 --epochs 40 --patience 40 --seed $seed
done
run ucf_seed             "$data/ucf101_9" "${ucf_split[@]}" --size 112 --epochs 12 --clips-per-video 2 --patience 4 --no-refit

# weizmann4, leave-one-subject-out (9 folds, 4 test videos each).
run weizmann_mnv2_lstm   "$data/weizmann4" --cv "${mnv2[@]}"
run weizmann_mnv2_single "$data/weizmann4" --cv "${mnv2[@]}" --head single_frame
run weizmann_mnv2_pool   "$data/weizmann4" --cv "${mnv2[@]}" "${pool[@]}"
for seed in 1 2; do
  run weizmann_mnv2_pool_s$seed "$data/weizmann4" --cv "${mnv2[@]}" "${pool[@]}" --seed $seed
done
run weizmann_seed        "$data/weizmann4" --cv --size 64 --epochs 15 --clips-per-video 8 --patience 5 --no-refit

# ps7, leave-one-person-out (3 folds, 9 test videos each).
run ps7_mnv2_lstm        "$data/ps7" --cv "${mnv2[@]}"
run ps7_mnv2_single      "$data/ps7" --cv "${mnv2[@]}" --head single_frame
# The same at 112x112, the size the pre-project floor used (the person fills more of a smaller frame
# for the backbone's receptive field); three seeds for the spread.
mnv2_112=(--backbone mobilenet_v2 --weights "$weights" --size 112 --lr 1e-3 --epochs 40 --patience 10)
for seed in 0 1 2; do
  run ps7_mnv2_lstm_112_s$seed "$data/ps7" --cv "${mnv2_112[@]}" --seed $seed
done
for seed in 0 1 2; do
  run ps7_mnv2_pool_112_s$seed "$data/ps7" --cv "${mnv2_112[@]}" "${pool[@]}" --seed $seed
done
run ps7_mnv2_single_112  "$data/ps7" --cv "${mnv2_112[@]}" --head single_frame
run ps7_seed             "$data/ps7" --cv --size 112 --epochs 12 --clips-per-video 8 --patience 4 --no-refit

# Synthetic motion-only actions (7 classes): trained on 1,400 freshly rendered clips per epoch,
# tested on 70 written videos (group 02; group 01 validates). Small CNN at 32x32, seed at 64x64.
for size in 32 64; do
  if [ "${#selected[@]}" -eq 0 ] || [[ " ${selected[*]} " =~ " synth_" ]]; then
    [ -d "$runs/synth$size" ] || lrcn synth "$runs/synth$size" --videos-per-class 20 --frames 24 --size $size \
        --groups 2 --seed 11
  fi
done
synth=(--test-groups 02 --no-refit --clip-length 8 --batch-size 16 --lr 1e-3 --synthetic-clips 1400 --no-flip)
small=(--backbone small --size 32 --lstm-units 128 --dropout 0 0 --epochs 15 --patience 5)
for seed in 0 1 2; do  # synth_small_lstm_s0, _s1, _s2: the spread over seeds
  run synth_small_lstm_s$seed "$runs/synth32" "${synth[@]}" "${small[@]}" --seed $seed
done
run synth_small_single  "$runs/synth32" "${synth[@]}" "${small[@]}" --head single_frame
run synth_seed          "$runs/synth64" "${synth[@]}" --size 64 --epochs 10 --patience 4
