"""Reading a finished training workdir: its trained extractor and what it
learned from.

Export assembly (`beau_tf.exporting.assemble`) reads training runs through
this module alone; the workdir's files are listed in
`beau_tf.training.config`.
"""

import os
from collections.abc import Sequence

import keras

from beau_tf.training import config as config_lib


def extractor_path(workdir: str) -> str:
    """Where a run saves its trained extractor (written at the end)."""
    return os.path.join(workdir, config_lib.EXTRACTOR_FILE)


def is_finished(workdir: str) -> bool:
    """Whether the run in `workdir` has saved its trained extractor."""
    return os.path.exists(extractor_path(workdir))


def load_extractors(
    workdirs: Sequence[str],
) -> tuple[list[keras.Model], int]:
    """The trained extractors of training workdirs and their image size.

    Raises:
      FileNotFoundError: a workdir without train_config.json or
        extractor.keras.
      ValueError: workdirs trained at different image sizes.
    """
    extractors, sizes = [], []
    for workdir in workdirs:
        config = config_lib.load_train_config(workdir)
        path = extractor_path(workdir)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} not found: the run in {workdir} has not finished "
                "(python -m beau_tf.train writes it at the end)."
            )
        extractors.append(keras.saving.load_model(path))
        sizes.append(config.extractor.image_size)
    if len(set(sizes)) > 1:
        raise ValueError(
            f"Workdirs {list(workdirs)} were trained at image sizes {sizes}; "
            "ensemble members must share one image size."
        )
    return extractors, sizes[0]


def source(workdir: str) -> dict:
    """What a trained member came from, for the model identity: its workdir,
    whether its mask decoder learned (from the mask loss, or through
    attention pooling) and, when it was distilled, the teacher and the photos
    it learned from."""
    config = config_lib.load_train_config(workdir)
    record = {
        "workdir": os.path.abspath(workdir),
        "trained_mask_decoder": config.mask_loss_weight > 0
        or config.extractor.pooling == "attention",
    }
    if config.distills:
        record["distilled_from"] = {
            "teacher": os.path.abspath(config.teacher),
            "photos": os.path.abspath(config.photos),
        }
    return record
