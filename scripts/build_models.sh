#!/usr/bin/env bash
# Rebuild every shipped model file from scratch: both encoders, both decoders, their ONNX export,
# evaluation for the model card, and the copy into models/shipped/NAME (what the package ships);
# then the two grader encoders (same recipe, seed 1) that `vqcpc evaluate` grades with.
# About 45 min (encoders, both at once) + 60 min (decoders, both at once) + 30 min (graders) on 2 CPU cores.
# Resumable: re-run with RESUME=1 after a kill; each training step continues from its last epoch.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs}
RESUME=${RESUME:+--resume}
mkdir -p "$RUNS"
for neg in uniform sameseq; do
  vqcpc train encoder --negatives $neg --codes 16 --out "$RUNS/$neg" --seed 0 --epochs 30 --steps-per-epoch 250 \
    --threads 1 --quiet $RESUME > "$RUNS/train-encoder-$neg.log" 2>&1 &
done
wait
for neg in uniform sameseq; do
  vqcpc train decoder --model "$RUNS/$neg" --seed 0 --epochs 16 --steps-per-epoch 60 --d-model 128 --layers 3 \
    --heads 4 --d-ff 512 --window 512 --threads 1 --quiet $RESUME > "$RUNS/train-decoder-$neg.log" 2>&1 &
done
wait
for neg in uniform sameseq; do
  vqcpc-export "$RUNS/$neg" --int8 --force
  python scripts/model_card.py "$RUNS/$neg" --ship models/shipped/$neg
done
for neg in uniform sameseq; do
  vqcpc train encoder --negatives $neg --codes 16 --out "$RUNS/grader-$neg" --seed 1 --epochs 30 --steps-per-epoch 250 \
    --threads 1 --quiet $RESUME > "$RUNS/train-grader-$neg.log" 2>&1 &
done
wait
for neg in uniform sameseq; do
  vqcpc-export "$RUNS/grader-$neg" --force  # an encoder alone: encoder.onnx + model.json (kind "encoder")
  mkdir -p models/shipped/graders/$neg
  cp "$RUNS/grader-$neg"/{encoder.onnx,encoder.json,encoder.safetensors,encoder_log.csv,model.json} models/shipped/graders/$neg/
done
