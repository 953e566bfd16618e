"""Learning an export's in-domain projection from unlabelled photos.

The catalogue and the photos are embedded through the very functions the
export will serve (`saved_model.ServingModule`: catalogue shots one view each,
photos as queries are, with the multiscale signature), so the projection is
learned on what the index and the queries will hold; then
`self_training.self_train` learns it.
"""

import dataclasses
import os
from collections.abc import Sequence

import keras
import numpy as np

from beau_tf.adaptation import self_training
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import saved_model


def learn_projection(
    model: keras.Model,
    query_zooms: Sequence[float],
    catalogue_paths: Sequence[str],
    photo_paths: Sequence[str],
    config: self_training.SelfTrainingConfig,
    batch_size: int = 32,
    source: str = "",
    mask_views: Sequence[float] = (),
) -> tuple[self_training.Projection, dict]:
    """Embeds catalogue and photos with `model`, then self-trains.

    Args:
      model: the model to export (extractor interface).
      query_zooms: the export's query zooms (photos are embedded as queries).
      catalogue_paths: the catalogue images the index will hold.
      photo_paths: unlabelled in-domain photos; never a query set that will
        be scored.
      config: the self-training recipe.
      batch_size: images per model call.
      source: where the photos were listed from (a folder or CSV), for the
        record; by default the folder that holds them all.
      mask_views: the export's mask-view paddings (photos are embedded as
        queries).

    Returns:
      `(projection, record)`: the record (for the model identity) says what
      was learned from: the photos' source, photo and catalogue counts, the
      recipe and each round's pseudo-label summary.
    """
    module = saved_model.ServingModule(
        model, query_zooms, mask_views=mask_views
    )

    def embed(function, paths, description) -> np.ndarray:
        embeddings, _ = embedding_lib.embed_files(
            embedding_lib.as_embed_fn(function),
            list(paths),
            batch_size=batch_size,
            description=description,
        )
        return embeddings

    catalogue = embed(module.serve, catalogue_paths, "Adaptation: catalogue")
    photos = embed(
        module.serve_multiscale, photo_paths, "Adaptation: unlabelled photos"
    )
    projection, history = self_training.self_train(catalogue, photos, config)
    if not source:
        source = os.path.commonpath(
            [os.path.dirname(os.path.abspath(p)) for p in photo_paths]
        )
    record = {
        "method": "self-trained discriminant projection",
        "photos": source,
        "num_photos": int(len(photos)),
        "num_catalogue": int(len(catalogue)),
        "config": dataclasses.asdict(config),
        "rounds": history,
    }
    return projection, record
