r"""Converts an export's model for OpenVINO, for the local paths' --runtime.

  python -m beau_tf.convert --model=exported/beau_tf/1 --runtime=openvino \
      --catalog=out/grocery/catalog.csv
  python -m beau_tf.convert --model=exported/beau_tf/1 \
      --runtime=openvino-int8 --catalog=out/grocery/catalog.csv \
      [--photos=out/grocery/photos_unlabelled.csv] [--calibration_images=300] \
      [--check_images=64] [--least_cosine=0.99 --mean_cosine=0.995]

Then `python -m beau_tf.index / search / evaluate / serve ... --runtime=
openvino-int8` embed with the copy. Needs pip install 'beau_tf[openvino]'.

The copy is compared with the SavedModel on --check_images of the catalogue
and of --photos (both signatures; int8 is calibrated on --calibration_images
others of each, when there are enough) and written into the export folder
only when every image keeps its status and the cosine similarities of the
embeddings to the SavedModel's reach the runtime's least and mean
(`beau_tf.serving.runtimes.RUNTIMES`, or --least_cosine, --mean_cosine).
The SavedModel stays what TF Serving loads; see beau_tf.serving.runtimes.
"""

import sys

from absl import app
from absl import flags

from beau_tf.common import cli
from beau_tf.data import catalog as catalog_lib
from beau_tf.serving import conversion
from beau_tf.serving import runtimes

_MODEL = flags.DEFINE_string(
    "model",
    None,
    "Export version folder, e.g. exported/beau_tf/1.",
    required=True,
)
_RUNTIME = flags.DEFINE_enum(
    "runtime",
    None,
    sorted(runtimes.RUNTIMES),
    "The runtime to convert for (see beau_tf.serving.runtimes).",
    required=True,
)
_CATALOG = flags.DEFINE_string(
    "catalog",
    None,
    "Catalogue images (folder or CSV item_id,path) to check the copy on "
    "and to calibrate int8 with.",
    required=True,
)
_PHOTOS = flags.DEFINE_string(
    "photos",
    None,
    "Unlabelled in-domain photos (folder or CSV), which the copy is also "
    "checked on and int8 also calibrated on: recommended for int8, whose "
    "ranges calibrated on catalogue shots alone clip photos (bench/"
    "RESULTS.md, 'Runtimes'). Never the photos you score.",
)
_CHECK_IMAGES = flags.DEFINE_integer(
    "check_images",
    64,
    "Catalogue images (and as many --photos) the copy is compared on.",
    lower_bound=1,
)
_CALIBRATION_IMAGES = flags.DEFINE_integer(
    "calibration_images",
    300,
    "Catalogue images (and as many --photos) int8 is calibrated on.",
    lower_bound=1,
)
_LEAST_COSINE = flags.DEFINE_float(
    "least_cosine",
    None,
    "Least cosine similarity to the SavedModel's embedding accepted for "
    "an image; default the runtime's.",
    lower_bound=-1.0,
    upper_bound=1.0,
)
_MEAN_COSINE = flags.DEFINE_float(
    "mean_cosine",
    None,
    "Least mean cosine similarity accepted; default the runtime's.",
    lower_bound=-1.0,
    upper_bound=1.0,
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    int8 = runtimes.RUNTIMES[_RUNTIME.value].weights == "int8"
    sources = [[item.path for item in catalog_lib.list_catalog(_CATALOG.value)]]
    if _PHOTOS.value:
        sources.append(catalog_lib.list_photos(_PHOTOS.value))
    check, calibration = conversion.split_images(
        sources, _CHECK_IMAGES.value, _CALIBRATION_IMAGES.value if int8 else 0
    )
    try:
        conversion.convert(
            _MODEL.value,
            _RUNTIME.value,
            check,
            calibration,
            least_cosine=_LEAST_COSINE.value,
            mean_cosine=_MEAN_COSINE.value,
            source=" and ".join(filter(None, [_CATALOG.value, _PHOTOS.value])),
        )
    except runtimes.RuntimeNotInstalledError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    cli.run(main)
