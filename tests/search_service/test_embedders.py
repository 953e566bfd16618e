"""Tests for beau_tf.search_service.embedders: what the service adds to an
opened model (503 errors, the index check, the warm-up)."""

import os

from absl.testing import absltest
import numpy as np

from beau_tf.retrieval import index_dir
from beau_tf.search_service import embedders
from beau_tf.serving import contract
from beau_tf.serving import embedding as embedding_lib
from beau_tf.serving import models
from tests.fixtures import fakes
from tests.fixtures import testing
from tests.fixtures.ports import free_port


class ServiceModelTest(absltest.TestCase):

    def test_the_summary_is_the_model_s(self):
        # The fingerprint rule itself: tests/serving/test_models.py.
        model = fakes.FakeModel().as_embedding_model()
        self.assertEqual(
            model.summary(),
            {"name": "fake", "version": 1, "fingerprint": "weights-1"},
        )

    def test_check_index_refuses_another_model(self):
        root = testing.make_tempdir(self)
        fakes.write_index(os.path.join(root, "index"), root)
        bundle = index_dir.load_index(os.path.join(root, "index"))
        embedders.check_index(fakes.FakeModel().as_embedding_model(), bundle)
        for other in (fakes.identity(weights="weights-2"), fakes.identity(2)):
            with self.assertRaisesRegex(ValueError, "index .* was built with"):
                embedders.check_index(
                    fakes.FakeModel(other).as_embedding_model(), bundle
                )

    def test_answers_of_another_model_are_refused(self):
        model = fakes.FakeModel()
        model.answers_as = "weights-2"
        embed = model.as_embedding_model().embed_fns["serving_default"]
        with self.assertRaisesRegex(
            embedders.EmbeddingUnavailableError,
            "model fingerprint weights-2.*built from .* model fingerprint "
            "weights-1",
        ):
            embed([fakes.photo(0)])

    def test_answers_of_the_wrong_length_are_refused(self):
        def short(images):
            return embedding_lib.EmbeddedBatch(
                np.zeros((1, fakes.DIM), np.float32), ["ok"], "weights-1"
            )

        embed = embedders.for_service(
            models.EmbeddingModel(
                fakes.identity(), {"serving_default": short}, None, "the model"
            )
        ).embed_fns["serving_default"]
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
        with self.assertRaisesRegex(
            contract.IncompatibleModelError, "without a model fingerprint"
        ):
            embedders.connect_to_server("127.0.0.1:8500", older)
        with self.assertRaisesRegex(ValueError, "host:port"):
            embedders.connect_to_server("no port", fakes.identity())


if __name__ == "__main__":
    absltest.main()
