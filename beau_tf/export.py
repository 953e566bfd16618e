r"""Exports extractors as a TF Serving SavedModel version.

  python -m beau_tf.export --workdirs=runs/r50,runs/lite2 --member_weights=1,1 \
      --pca_dim=256 --pca_catalog=catalog.csv \
      --export_dir=exported --model_name=beau_tf

writes exported/beau_tf/<next version>/ (see `beau_tf.serving.contract`). One workdir
exports its extractor alone; several are combined into one ensemble
(`beau_tf.models.ensemble`), PCA-whitened on the catalogue's embeddings when
--pca_dim > 0. Serve it as export/README.md shows.

Untrained ImageNet backbones export without a workdir, and in-domain
adaptation from unlabelled photos (`beau_tf.adaptation`) is one flag.
--adapt_photos learns a projection by self-training on the shop's own photos
(no labels) and bakes it into both signatures; the identity records what it
learned from.

The best measured recipe on GroceryStore (bench/RESULTS.md, "Distilling the
adapted ensemble") has two steps. Step 1 (configs/recommended.flags) trains
nothing: three untrained backbones, adapted; it is also the teacher of step 2.

  python -m beau_tf.export \
      --backbones=efficientnet_lite0,efficientnet_lite1,efficientnet_lite2 \
      --adapt_photos=shop_photos/ --adapt_catalog=catalog.csv \
      --export_dir=teachers

Step 2 distils the teacher into each of the three backbones
(configs/distill.flags, `python -m beau_tf.train`) and exports their ensemble,
adapted the same way:

  python -m beau_tf.export \
      --workdirs=runs/lite0_distilled,runs/lite1_distilled,runs/lite2_distilled \
      --adapt_photos=shop_photos/ --adapt_catalog=catalog.csv
"""

import os

from absl import app
from absl import flags
from absl import logging

from beau_tf.adaptation import learn
from beau_tf.adaptation.self_training import SelfTrainingConfig
from beau_tf.common import cli
from beau_tf.common import files
from beau_tf.data import catalog as catalog_lib
from beau_tf.exporting import assemble
from beau_tf.serving import contract
from beau_tf.serving import saved_model

_WORKDIRS = flags.DEFINE_list(
    "workdirs", [], "Training workdirs, comma-separated."
)
_BACKBONES = flags.DEFINE_list(
    "backbones",
    [],
    "ImageNet backbones to export untrained (GAP pooling), alone or beside "
    "--workdirs, e.g. efficientnet_lite0,efficientnet_lite1,efficientnet_lite2.",
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size",
    224,
    "Image size of --backbones members when no workdir sets it.",
)
_MEMBER_WEIGHTS = flags.DEFINE_list(
    "member_weights",
    [],
    "One weight per workdir, comma-separated; empty weighs them equally.",
)
_PCA_DIM = flags.DEFINE_integer(
    "pca_dim", 0, "PCA-whitening size; 0 for no whitening."
)
_PCA_CATALOG = flags.DEFINE_string(
    "pca_catalog",
    "",
    "Catalogue (folder or CSV) whose embeddings the whitening is learned on.",
)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size",
    32,
    "Batch size for embedding the PCA catalogue and the adaptation photos.",
)
_QUERY_ZOOMS = flags.DEFINE_list(
    "query_zooms",
    [str(zoom) for zoom in contract.DEFAULT_QUERY_ZOOMS],
    "Central-crop fractions the query_multiscale signature averages over "
    "(1.0 = the whole photo).",
)
_QUERY_MASK_VIEWS = flags.DEFINE_list(
    "query_mask_views",
    [],
    "Paddings of mask-guided query views, e.g. 0.25: query_multiscale also "
    "embeds the square around the product the mask decoder finds on the "
    "whole photo, widened by each padding (a fraction of its side). Needs a "
    "trained member (--workdirs); its decoder finds the product. Empty: the "
    "zooms alone.",
)
_ADAPT_PHOTOS = flags.DEFINE_string(
    "adapt_photos",
    "",
    "Unlabelled in-domain photos (a folder, or a CSV with a path column) to "
    "learn the adaptation projection from; empty: no adaptation. Never the "
    "photos you will evaluate on.",
)
_ADAPT_CATALOG = flags.DEFINE_string(
    "adapt_catalog",
    "",
    "The catalogue (folder or CSV) the index will hold; needed with "
    "--adapt_photos.",
)
_ADAPT_DIM = flags.DEFINE_integer(
    "adapt_dim", 80, "Size of the adapted embeddings (< catalogue size)."
)
_ADAPT_ROUNDS = flags.DEFINE_integer(
    "adapt_rounds", 5, "Self-training rounds (assign, then fit)."
)
_ADAPT_RIDGE = flags.DEFINE_float(
    "adapt_ridge",
    None,
    "Ridge on the within-class covariance, in units of its mean eigenvalue; "
    "unset: 3 for one model, 1 for an ensemble (measured best).",
)
_ADAPT_PCA_DIM = flags.DEFINE_integer(
    "adapt_pca_dim",
    None,
    "Reduce to this many principal directions before adapting; 0: none; "
    "unset: none for one model, 512 for an ensemble (measured best).",
)
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", "exported", "Folder holding one folder per model name."
)
_MODEL_NAME = flags.DEFINE_string(
    "model_name", "beau_tf", "Model name (TF Serving's MODEL_NAME)."
)
_VERSION = flags.DEFINE_integer(
    "version", None, "Version to write; unset: 1 + the highest existing."
)


def parse_floats(flag: str, values: list[str], expected: str) -> list[float]:
    """A list flag's values as floats; ValueError naming the flag otherwise."""
    try:
        return [float(value) for value in values]
    except ValueError:
        raise ValueError(
            f"--{flag}={','.join(values)}; {expected} expected."
        ) from None


def parse_weights(values: list[str], count: int) -> list[float] | None:
    """`--member_weights` as floats, one per member (None when empty)."""
    if not values:
        return None
    weights = parse_floats("member_weights", values, "numbers")
    if len(weights) != count:
        raise ValueError(
            f"--member_weights has {len(weights)} values for {count} "
            "members; give one per workdir and backbone."
        )
    return weights


def parse_zooms(values: list[str]) -> tuple[float, ...]:
    """`--query_zooms` as floats in (0, 1]."""
    zooms = parse_floats("query_zooms", values, "numbers in (0, 1]")
    return contract.check_zooms(zooms)


def parse_mask_views(
    values: list[str], zooms: tuple[float, ...]
) -> tuple[float, ...]:
    """`--query_mask_views` as paddings (`contract.check_mask_views`)."""
    pads = parse_floats("query_mask_views", values, "paddings in [0, 4]")
    return contract.check_mask_views(pads, zooms)


def pca_paths() -> list[str]:
    """The --pca_catalog images, checked before any model is built."""
    if _PCA_DIM.value <= 0:
        return []
    if not _PCA_CATALOG.value:
        raise ValueError(f"--pca_dim={_PCA_DIM.value} needs --pca_catalog.")
    return [item.path for item in catalog_lib.list_catalog(_PCA_CATALOG.value)]


def adaptation_inputs(
    num_members: int,
) -> tuple[list[str], list[str], SelfTrainingConfig | None]:
    """The --adapt_* flags, checked before any model is built: (catalogue
    paths, photo paths, recipe for a model of `num_members` members); empty
    lists and None when not adapting."""
    if not _ADAPT_PHOTOS.value:
        if _ADAPT_CATALOG.value:
            raise ValueError(
                "--adapt_catalog is only used with --adapt_photos."
            )
        return [], [], None
    if not _ADAPT_CATALOG.value:
        raise ValueError(
            "--adapt_photos needs --adapt_catalog: the catalogue the index "
            "will hold (its products are the classes photos are assigned to)."
        )
    ensemble = num_members > 1
    ridge, pca_dim = _ADAPT_RIDGE.value, _ADAPT_PCA_DIM.value
    config = SelfTrainingConfig(
        dim=_ADAPT_DIM.value,
        rounds=_ADAPT_ROUNDS.value,
        ridge=(1.0 if ensemble else 3.0) if ridge is None else ridge,
        pca_dim=(512 if ensemble else 0) if pca_dim is None else pca_dim,
    )
    catalogue = catalog_lib.list_catalog(_ADAPT_CATALOG.value)
    photos = catalog_lib.list_photos(_ADAPT_PHOTOS.value)
    return [item.path for item in catalogue], photos, config


def main(argv):
    del argv
    workdirs, backbones = _WORKDIRS.value, _BACKBONES.value
    if not workdirs and not backbones:
        raise app.UsageError("Pass --workdirs, --backbones or both.")
    num_members = len(workdirs) + len(backbones)
    query_zooms = parse_zooms(_QUERY_ZOOMS.value)
    mask_views = parse_mask_views(_QUERY_MASK_VIEWS.value, query_zooms)
    export_dir, model_name, version = (
        _EXPORT_DIR.value,
        _MODEL_NAME.value,
        _VERSION.value,
    )
    # Every input is checked before the slow work.
    files.check_writable(export_dir, "--export_dir", folder=True)
    saved_model.free_version_dir(export_dir, model_name, version)
    whitening_paths = pca_paths()
    adapt_catalogue, adapt_photos, adapt_config = adaptation_inputs(num_members)
    model, members = assemble.build_export_model(
        workdirs,
        weights=parse_weights(_MEMBER_WEIGHTS.value, num_members),
        pca_dim=_PCA_DIM.value,
        pca_paths=whitening_paths,
        batch_size=_BATCH_SIZE.value,
        backbones=backbones,
        image_size=_IMAGE_SIZE.value,
    )
    assemble.check_mask_views(mask_views, members)
    projection = adaptation = None
    if adapt_photos:
        learned, adaptation = learn.learn_projection(
            model, query_zooms, adapt_catalogue, adapt_photos, adapt_config,
            batch_size=_BATCH_SIZE.value, mask_views=mask_views,
            source=os.path.abspath(_ADAPT_PHOTOS.value),
        )  # fmt: skip
        projection = (learned.mean, learned.matrix)
    version_dir = saved_model.export_saved_model(
        model, export_dir, model_name, version=version, members=members,
        query_zooms=query_zooms, projection=projection, adaptation=adaptation,
        query_mask_views=mask_views,
    )  # fmt: skip
    logging.info(
        "Serve it with export/README.md's command; wrote %s", version_dir
    )


if __name__ == "__main__":
    cli.run(main)
