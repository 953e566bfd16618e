"""Tests for beau_tf.search_service.embedders: the one adapter over both models."""

import os

from absl.testing import absltest
import numpy as np

from beau_tf.retrieval import index_dir
from beau_tf.search_service import embedders
from beau_tf.serving import embedding as embedding_lib
from tests.fixtures import fakes
from tests.fixtures import testing
from tests.fixtures.ports import free_port


class EmbeddingModelTest(absltest.TestCase):

    def test_summary_prefers_the_model_fingerprint(self):
        model = fakes.FakeModel().as_embedding_model()
        self.assertEqual(
            model.summary(),
            {"name": "fake", "version": 1, "fingerprint": "weights-1"},
        )
        older = dict(fakes.identity())
        del older["model_fingerprint"]
        self.assertEqual(
            fakes.FakeModel(older)
            .as_embedding_model()
            .summary()["fingerprint"],
            "signature-1",
        )

    def test_check_index_refuses_another_model(self):
        root = testing.make_tempdir(self)
        fakes.write_index(os.path.join(root, "index"), root)
        bundle = index_dir.load_index(os.path.join(root, "index"))
        fakes.FakeModel().as_embedding_model().check_index(bundle)
        for other in (fakes.identity(weights="weights-2"), fakes.identity(2)):
            with self.assertRaisesRegex(ValueError, "index .* was built with"):
                fakes.FakeModel(other).as_embedding_model().check_index(bundle)

    def test_answers_of_another_model_are_refused(self):
        model = fakes.FakeModel()
        model.answers_as = "weights-2"
        embed = model.as_embedding_model().embed_fns["serving_default"]
        with self.assertRaisesRegex(
            embedders.EmbeddingUnavailableError,
            "fingerprint weights-2.*built with weights-1",
        ):
            embed([fakes.photo(0)])

    def test_answers_of_the_wrong_length_are_refused(self):
        def short(images):
            return embedding_lib.EmbeddedBatch(
                np.zeros((1, fakes.DIM), np.float32), ["ok"], "weights-1"
            )

        embed = embedders.checked(short, fakes.identity(), "the model")
        with self.assertRaisesRegex(
            embedders.EmbeddingUnavailableError, "1 embeddings.*for 2 images"
        ):
            embed([fakes.photo(0), fakes.photo(1)])

    def test_warm_up_refuses_embeddings_of_the_wrong_size(self):
        model = fakes.FakeModel(dict(fakes.identity(), embedding_dim=4))
        with self.assertRaisesRegex(
            embedders.EmbeddingUnavailableError, r"\(1, 8\).*\(1, 4\)"
        ):
            embedders.warm_up(model.as_embedding_model())


class ServerTest(absltest.TestCase):

    def test_a_server_that_is_down_is_named_by_warm_up(self):
        model = embedders.connect_to_server(
            f"127.0.0.1:{free_port()}", fakes.identity(), timeout_seconds=5
        )
        self.assertIsNone(model.mask_fn)
        with self.assertRaisesRegex(
            embedders.EmbeddingUnavailableError, "could not reach TF Serving"
        ):
            embedders.warm_up(model)

    def test_an_index_without_a_model_fingerprint_is_refused(self):
        older = dict(fakes.identity())
        del older["model_fingerprint"]
        with self.assertRaisesRegex(ValueError, "without a model fingerprint"):
            embedders.connect_to_server("127.0.0.1:8500", older)
        with self.assertRaisesRegex(ValueError, "host:port"):
            embedders.connect_to_server("no port", fakes.identity())


if __name__ == "__main__":
    absltest.main()
