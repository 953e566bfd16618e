"""Tests for beau_tf.serving.embedding with a stand-in model (a tiny export,
locally and over gRPC, is embedded in tests/serving/test_models.py)."""

import os
import tempfile
import unittest

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from beau_tf.data import decode
from beau_tf.serving import embedding as embedding_lib
from tests.fixtures import tiny_export

_REFUSED = "grey, which the stand-in refuses"


class _LengthEmbedder:
    """Embeds each image as (its byte count, 1); refuses the grey PNG with a
    status, as a model reports an image it cannot use. Records each call's
    batch size."""

    def __init__(self):
        self.batch_sizes = []
        self.grey = tiny_export.good_bytes()[2]

    def __call__(self, images):
        self.batch_sizes.append(len(images))
        lengths = np.array([len(image) for image in images], np.float32)
        return embedding_lib.EmbeddedBatch(
            embeddings=np.stack([lengths, np.ones_like(lengths)], axis=1),
            statuses=[
                _REFUSED if image == self.grey else "ok" for image in images
            ],
            model_fingerprint="stand-in",
        )


def _skipped_lines(logs) -> list[str]:
    return [line for line in logs.output if "Skipped: " in line]


class EmbedFilesTest(unittest.TestCase):

    def setUp(self):
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.paths, self.bad = tiny_export.write_files(directory.name)

    def test_bad_files_are_skipped_by_name_and_rows_stay_aligned(self):
        embed_fn = _LengthEmbedder()
        with self.assertLogs(level="WARNING") as logs:
            embeddings, kept = embedding_lib.embed_files(
                embed_fn, self.paths, batch_size=2
            )
        grey = self.paths.index(
            os.path.join(os.path.dirname(self.bad[0]), "c.png")
        )
        good = [i for i, p in enumerate(self.paths) if p not in self.bad]
        self.assertEqual(kept, [i for i in good if i != grey])
        # Row i is the file kept[i], read as the model receives it.
        np.testing.assert_array_equal(
            embeddings[:, 0],
            [len(decode.read_for_model(self.paths[i])) for i in kept],
        )
        # Only readable files reach the model, two paths' worth at a time.
        self.assertEqual(embed_fn.batch_sizes, [1, 1, 1, 1, 1])
        lines = _skipped_lines(logs)
        self.assertEqual(len(lines), len(self.bad) + 1)
        for path in self.bad + [self.paths[grey]]:
            self.assertEqual(sum(path in line for line in lines), 1, path)
        self.assertTrue(any(f"c.png is {_REFUSED}" in l for l in lines))
        self.assertTrue(any("tiny.png is 1×1 pixels" in l for l in lines))
        self.assertIn("5 of 9 images skipped", "\n".join(logs.output))

    def test_a_missing_file_or_folder_is_skipped_by_name(self):
        folder = os.path.dirname(self.paths[0])
        missing = os.path.join(folder, "missing.jpg")
        with self.assertLogs(level="WARNING") as logs:
            _, kept = embedding_lib.embed_files(
                _LengthEmbedder(), [missing, folder, self.paths[0]]
            )
        self.assertEqual(kept, [2])
        lines = _skipped_lines(logs)
        self.assertEqual(len(lines), 2)
        self.assertIn("missing.jpg does not exist", lines[0])
        self.assertIn("is a folder", lines[1])

    def test_nothing_embeddable_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "None of the 4 images"):
            embedding_lib.embed_files(_LengthEmbedder(), self.bad)

    def test_a_batch_size_below_one_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "batch_size=0"):
            embedding_lib.embed_files(
                _LengthEmbedder(), self.paths, batch_size=0
            )

    def test_an_answer_of_the_wrong_length_is_an_error(self):
        def short(images):
            answer = _LengthEmbedder()(images)
            return embedding_lib.EmbeddedBatch(
                answer.embeddings[:-1], answer.statuses[:-1], "x"
            )

        with self.assertRaisesRegex(ValueError, "1 embeddings.*for 2 images"):
            embedding_lib.embed_files(short, self.paths[:3:2])


class LoadEmbedFnTest(unittest.TestCase):

    def test_a_folder_without_a_saved_model_is_named(self):
        with tempfile.TemporaryDirectory() as root:
            with self.assertRaisesRegex(
                FileNotFoundError, "holds no SavedModel"
            ):
                embedding_lib.load_embed_fn(root)

    def test_an_export_without_statuses_is_refused(self):
        module = tf.Module()
        module.serve = tf.function(
            lambda images: {"embedding": tf.ones([tf.shape(images)[0], 4])},
            input_signature=[tf.TensorSpec([None], tf.string, name="images")],
        )
        with tempfile.TemporaryDirectory() as root:
            tf.saved_model.save(
                module, root, signatures={"serving_default": module.serve}
            )
            with self.assertRaisesRegex(
                ValueError,
                r"without \['model_fingerprint', 'status'\].*re-export",
            ):
                embedding_lib.load_embed_fn(root)


if __name__ == "__main__":
    absltest.main()
