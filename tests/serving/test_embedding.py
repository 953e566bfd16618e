"""Tests for beau_tf.serving.embedding with a stand-in model: fast."""

import os
import tempfile
import unittest

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from beau_tf.serving import embedding as embedding_lib


def _length_embedder(images: tf.Tensor) -> np.ndarray:
    """Embeds each image as (its byte count, 1); rejects empty bytes as the
    SavedModel rejects undecodable ones."""
    lengths = tf.strings.length(images).numpy()
    if (lengths == 0).any():
        raise tf.errors.InvalidArgumentError(None, None, "Input is empty.")
    return np.stack([lengths, np.ones_like(lengths)], axis=1).astype(np.float32)


class EmbedFilesTest(unittest.TestCase):

    def setUp(self):
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.paths = []
        for name, size in [("a", 3), ("b", 0), ("c", 5), ("d", 7), ("e", 0)]:
            path = os.path.join(directory.name, f"{name}.jpg")
            with open(path, "wb") as stream:
                stream.write(b"x" * size)
            self.paths.append(path)

    def test_bad_images_are_skipped_by_name_and_rows_stay_aligned(self):
        with self.assertLogs(level="WARNING") as logs:
            embeddings, kept = embedding_lib.embed_files(
                _length_embedder, self.paths, batch_size=2
            )
        self.assertEqual(kept, [0, 2, 3])
        np.testing.assert_array_equal(embeddings[:, 0], [3, 5, 7])
        skipped = "\n".join(logs.output)
        self.assertIn("b.jpg", skipped)
        self.assertIn("e.jpg", skipped)
        self.assertIn("2 of 5 images skipped", skipped)

    def test_nothing_embeddable_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "None of the 2 images"):
            embedding_lib.embed_files(
                _length_embedder, [self.paths[1], self.paths[4]]
            )


class LoadEmbedFnTest(unittest.TestCase):

    def test_a_folder_without_a_saved_model_is_named(self):
        with tempfile.TemporaryDirectory() as root:
            with self.assertRaisesRegex(
                FileNotFoundError, "holds no SavedModel"
            ):
                embedding_lib.load_embed_fn(root)


if __name__ == "__main__":
    absltest.main()
