"""What the mask-guided query views cost next to today's three zooms.

  python -m bench.query_views [--workdir=out/runs/r50] [--photos=a.csv] \
      [--image_size=224] [--queries=16] [--rounds=3]

Exports one model three times, differing only in the views its
`query_multiscale` signature averages over, and times that signature at
batch 1 (one photo a call, as a shopper's query arrives) side by side in
alternating rounds on the same photos:

  zooms            the central zooms (1.0, 0.75, 0.5): today's default;
  zooms + mask     the same zooms and one mask-guided view, padded 0.25
                   (`python -m beau_tf.export --query_mask_views=0.25`);
  whole + mask     the whole photo and one mask-guided view: a mask view
                   instead of the two smaller zooms;
  1, 0.75 + mask   the zooms 1.0 and 0.75 and one mask-guided view: a mask
                   view instead of the smallest zoom, three views as today.

The model is --workdir's trained extractor when given (a trained decoder, as
the export CLI requires for mask views), otherwise an untrained ImageNet
EfficientNet-Lite0 (its decoder untrained): the views' cost does not depend
on what the decoder predicts, since every view is resized to the model's side.
The photos are --photos' (a photo list, as `python -m beau_tf.evaluate`
reads) or synthetic 640x480 JPEGs.

Writes bench/results/query_views.json: median ms per query of each and its
ratio to the zooms. Figures: bench/RESULTS.md ("Mask-guided views").
"""

import os
import re

from absl import flags
import tensorflow as tf

from beau_tf.data import catalog as catalog_lib
from beau_tf.exporting import assemble
from beau_tf.serving import contract
from bench import harness

_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "A finished training run whose extractor is timed (default: an "
    "untrained ImageNet EfficientNet-Lite0).",
)
_PHOTOS = flags.DEFINE_string(
    "photos",
    None,
    "A photo list (CSV with a path column, or a folder) whose first "
    "--queries photos are the queries (default: synthetic JPEGs).",
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 224, "Model side of the untrained default."
)
_QUERIES = flags.DEFINE_integer("queries", 16, "Query photos per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")

SMOKE = {"image_size": 64, "queries": 2, "rounds": 1}

# name -> (zooms, mask-view paddings) of `query_multiscale`.
VIEWS = {
    "zooms": (contract.DEFAULT_QUERY_ZOOMS, ()),
    "zooms + mask": (contract.DEFAULT_QUERY_ZOOMS, (0.25,)),
    "whole + mask": ((1.0,), (0.25,)),
    "1, 0.75 + mask": ((1.0, 0.75), (0.25,)),
}


def query_photos(count: int) -> list[bytes]:
    """The encoded query photos: --photos' first `count`, or synthetic."""
    if not _PHOTOS.value:
        return harness.photo_jpegs(count)
    paths = catalog_lib.list_photos(_PHOTOS.value)[:count]
    if not paths:
        raise ValueError(f"{_PHOTOS.value} lists no photos.")
    return [tf.io.read_file(path).numpy() for path in paths]


def main(argv):
    del argv
    if _WORKDIR.value:
        model, members = assemble.build_export_model([_WORKDIR.value])
    else:
        model, members = harness.untrained_model(image_size=_IMAGE_SIZE.value)
    export_base = os.path.join(harness.work_dir(), "exported")
    signatures = {}
    for name, (zooms, mask_views) in VIEWS.items():
        version_dir = harness.export(
            model,
            export_base,
            re.sub(r"[^a-z0-9]+", "_", name),  # a model name: "zooms_mask"
            members,
            query_zooms=zooms,
            query_mask_views=mask_views,
        )
        signatures[name] = tf.saved_model.load(version_dir).signatures[
            contract.MULTISCALE_SIGNATURE_NAME
        ]
    photos = query_photos(_QUERIES.value)
    measured = harness.side_by_side(
        {
            name: lambda signature=signature: harness.ms_per_query(
                signature, photos
            )
            for name, signature in signatures.items()
        },
        _ROUNDS.value,
        warmup=True,  # tracing, allocation
    )
    rows = measured.rows("ms per query")
    for row, name in zip(rows, signatures):
        row["x zooms"] = measured.ratio(name, "zooms")
        row["views"] = {
            "zooms": list(VIEWS[name][0]),
            "mask views": list(VIEWS[name][1]),
        }
    source = _WORKDIR.value or "untrained EfficientNet-Lite0"
    print(
        f"query_multiscale at batch 1 on {len(photos)} photos, "
        f"{_ROUNDS.value} rounds ({source}; {os.cpu_count()} CPUs):"
    )
    harness.print_table(rows, ["contender", "median ms per query", "x zooms"])
    harness.write_results(rows, model=source)


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
