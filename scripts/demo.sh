#!/usr/bin/env bash
# The README's first command: sets up .venv and runs beau_tf end to end on the
# embedded synthetic catalogue (generated here; no downloads, no external data).
#   bash scripts/demo.sh [out_dir]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/demo}"
bash scripts/setup.sh
py=.venv/bin/python
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

# 1. A catalogue of product shots on white, in-the-wild queries, backgrounds.
$py -m beau_tf.data.make_synthetic --out_dir="$out/synthetic"
# 2. What the model trains on: augmented pairs with their masks.
$py -m beau_tf.data.preview --catalog="$out/synthetic/catalog.csv" \
    --background_dir="$out/synthetic/backgrounds" --out="$out/preview.png"
# 3. Train the demo model (EfficientNet-Lite0, ImageNet weights ported offline)
#    for a minute or two; rerunning resumes or, when done, just re-saves.
$py -m beau_tf.train --flagfile=configs/demo.flags --workdir="$out/workdir" \
    --catalog="$out/synthetic/catalog.csv" \
    --background_dir="$out/synthetic/backgrounds"
echo "Wrote $out/preview.png and the trained extractor $out/workdir/extractor.keras"
echo "TensorBoard: tensorboard --logdir $out/workdir/tensorboard"
