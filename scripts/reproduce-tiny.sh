#!/usr/bin/env bash
# Rebuilds the synthfaces dataset and retrains the shipped tiny Face0 model
# (models/face0-synthfaces) from scratch with the project's own pipeline,
# then regenerates its evaluation (Tables 1 and 2, grid and strips) in
# docs/tiny-model/. Prints the wall time of each phase.
#
#   scripts/reproduce-tiny.sh            # the shipped recipe
#   STEPS=500 scripts/reproduce-tiny.sh  # a shorter run
#
# The text encoder is first pretrained contrastively on the dataset's
# caption-image pairs (TEXT_PRETRAIN steps), then frozen; it tokenises with
# CLIP's BPE vocabulary, which ships inside face0 (ml/clip/clipvocab). These
# are face0 train's defaults; the flags below spell the recipe out. It
# rewrites the committed model and report: OUT= and REPORT= put them
# elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${RUN:-${XDG_CACHE_HOME:-$HOME/.cache}/face0/reproduce-tiny}
OUT=${OUT:-models/face0-synthfaces}
STEPS=${STEPS:-12000}
TEXT_PRETRAIN=${TEXT_PRETRAIN:-500}
BATCH=${BATCH:-16}
REPORT=${REPORT:-docs/tiny-model}

make build >/dev/null
t0=$(date +%s)
rm -rf "$RUN/data"
bin/face0 synthfaces "$RUN/data" --seed 1 --train 1000 --heldout 20 --per-identity 4 --size 128
t1=$(date +%s)
bin/face0 train "$RUN/data" --out "$OUT" --run "$RUN/run" --face synthfaces-id \
	--steps "$STEPS" --batch "$BATCH" --lr 1e-3 --text-pretrain "$TEXT_PRETRAIN" --checkpoint-every 500 --plain
t2=$(date +%s)
bin/face0 evaluate --home "$RUN/home" --models "$(dirname "$OUT")" --model "$(basename "$OUT")" --report "$REPORT"
t3=$(date +%s)
echo "reproduce-tiny: dataset $((t1 - t0)) s, training $((t2 - t1)) s, evaluation $((t3 - t2)) s, total $((t3 - t0)) s"
