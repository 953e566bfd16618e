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
$py -m beau_tf.make_synthetic --out_dir="$out/synthetic"
# 2. What the model trains on: augmented pairs with their masks.
$py -m beau_tf.preview --catalog="$out/synthetic/catalog.csv" \
    --background_dir="$out/synthetic/backgrounds" --out="$out/preview.png"
# 3. Train the demo model (EfficientNet-Lite0, ImageNet weights ported offline)
#    for a minute or two; rerunning resumes or, when done, just re-saves.
$py -m beau_tf.train --flagfile=configs/demo.flags --workdir="$out/workdir" \
    --catalog="$out/synthetic/catalog.csv" \
    --background_dir="$out/synthetic/backgrounds"
# 4. Export it for TF Serving, index the catalogue with ScaNN, search a photo.
rm -rf "$out/exported" "$out/index"
$py -m beau_tf.export --workdirs="$out/workdir" --export_dir="$out/exported" \
    --model_name=beau_tf
$py -m beau_tf.index --model="$out/exported/beau_tf/1" \
    --catalog="$out/synthetic/catalog.csv" --index_dir="$out/index"
query="$(sed -n 2p "$out/synthetic/queries.csv" | cut -d, -f1)"
$py -m beau_tf.search --index="$out/index" --model="$out/exported/beau_tf/1" \
    --query="$out/synthetic/$query" --k=5 --visualize="$out/search.png"
# 5. How well it finds the products in all synthetic in-the-wild queries.
$py -m beau_tf.evaluate --model="$out/exported/beau_tf/1" --index="$out/index" \
    --queries="$out/synthetic/queries.csv" --visualize="$out/evaluation.png"
echo "Pictures: $out/preview.png (training pairs), $out/search.png (one query),"
echo "  $out/evaluation.png (12 queries with their top 5)."
echo "TF Serving: see export/README.md; TensorBoard: tensorboard --logdir $out/workdir/tensorboard"
echo "Search it in a browser: start the service with"
echo "  $py -m beau_tf.serve --index=$out/index --model=$out/exported/beau_tf/1"
echo "  and open http://127.0.0.1:8080/ (Ctrl-C stops it)."
