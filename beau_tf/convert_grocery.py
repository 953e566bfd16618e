r"""Converts the GroceryStoreDataset into beau_tf catalogue and query CSVs.

  python -m beau_tf.convert_grocery \
      --dataset_dir=../shared/data/grocery-store/dataset --out_dir=out/grocery

Writes catalog.csv, queries_val.csv, queries_train.csv and coarse.csv into
--out_dir; see `beau_tf.datasets.grocery` for what each holds.
"""

from typing import Sequence

from absl import app
from absl import flags
from absl import logging

from beau_tf.common import cli
from beau_tf.datasets import grocery

_DATASET_DIR = flags.DEFINE_string(
    "dataset_dir",
    None,
    "GroceryStoreDataset's dataset/ folder, holding classes.csv, train.txt, "
    "val.txt and iconic-images-and-descriptions/.",
    required=True,
)
_OUT_DIR = flags.DEFINE_string(
    "out_dir",
    None,
    "Folder for catalog.csv, queries_*.csv and coarse.csv; created if missing.",
    required=True,
)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    written = grocery.convert_grocery_store(_DATASET_DIR.value, _OUT_DIR.value)
    logging.info(
        "GroceryStoreDataset converted: %s",
        ", ".join(f"{name}={path}" for name, path in written.items()),
    )


if __name__ == "__main__":
    cli.run(main)
