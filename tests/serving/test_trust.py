"""Tests for beau_tf.serving.trust: what loading an export checks of it
(issue 21, finding 5)."""

import json
import os
import shutil
import tempfile

from absl.testing import absltest
import tensorflow as tf

from beau_tf.serving import contract
from beau_tf.serving import models
from beau_tf.serving import prediction_service
from beau_tf.serving import trust
from tests.fixtures import tiny_export


class _FileWriter(tf.Module):
    """A model whose signature writes a file as it embeds."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.scale = tf.Variable(1.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, images):
        tf.io.write_file(self.path, "written by the model")
        count = tf.shape(images)[0]
        return {
            contract.EMBEDDING_OUTPUT: tf.ones([count, 8]) * self.scale,
            contract.STATUS_OUTPUT: tf.fill([count], contract.STATUS_OK),
            contract.MODEL_FINGERPRINT_OUTPUT: tf.fill([count], "x"),
        }


class TrustTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        directory = tempfile.TemporaryDirectory(prefix="beau_tf_trust_")
        cls.addClassCleanup(directory.cleanup)
        cls.root = directory.name
        cls.base = os.path.join(cls.root, "exported")
        cls.model = tiny_export.export_tiny(cls.base, seed=0, version=1)

    def identity_of(self, model_dir):
        return contract.model_identity(model_dir)

    def copy_identity(self, source, target):
        """The plain abuse: another model with `source`'s identity file."""
        os.makedirs(os.path.join(target, "assets.extra"), exist_ok=True)
        shutil.copy(
            os.path.join(source, contract.IDENTITY_FILE),
            os.path.join(target, contract.IDENTITY_FILE),
        )

    def test_an_export_records_its_weights_and_loads(self):
        identity = self.identity_of(self.model)
        self.assertEqual(
            identity[trust.WEIGHTS_FINGERPRINT],
            trust.weights_fingerprint(self.model),
        )
        trust.check_export(self.model)
        self.assertEqual(trust.file_ops(self.model), {})
        again = tiny_export.export_tiny(self.base, seed=0, version=7)
        self.assertEqual(
            trust.weights_fingerprint(again),
            identity[trust.WEIGHTS_FINGERPRINT],
        )

    def test_another_models_identity_file_is_refused(self):
        other = tiny_export.export_tiny(
            os.path.join(self.root, "other"), seed=1, version=1
        )
        self.copy_identity(self.model, other)
        # It claims the model fingerprint of the first, and the index
        # built from that would have taken it; its weights say otherwise.
        self.assertEqual(
            self.identity_of(other)["model_fingerprint"],
            self.identity_of(self.model)["model_fingerprint"],
        )
        with self.assertRaisesRegex(
            trust.UntrustedExportError, "not the ones it was exported with"
        ):
            models.open_model(other, self.identity_of(self.model))
        with self.assertRaises(trust.UntrustedExportError):
            prediction_service.start_server(other, "beau_tf", 1)

    def test_a_signature_that_writes_files_is_refused_unrun(self):
        written = os.path.join(self.root, "written.txt")
        module = _FileWriter(written)
        evil = os.path.join(self.root, "evil", "beau_tf", "1")
        tf.saved_model.save(
            module, evil, signatures={contract.SIGNATURE_NAME: module.serve}
        )
        self.copy_identity(self.model, evil)
        identity = self.identity_of(evil)
        identity[trust.WEIGHTS_FINGERPRINT] = trust.weights_fingerprint(evil)
        with open(os.path.join(evil, contract.IDENTITY_FILE), "w") as stream:
            json.dump(identity, stream)
        self.assertEqual(
            trust.file_ops(evil), {contract.SIGNATURE_NAME: {"WriteFile"}}
        )
        with self.assertRaisesRegex(
            trust.UntrustedExportError, "read or write files.*WriteFile"
        ):
            models.open_model(evil, signature_names=[contract.SIGNATURE_NAME])
        self.assertFalse(os.path.exists(written))

    def test_an_index_holds_the_model_to_its_weights(self):
        built = self.identity_of(self.model)
        other = dict(built, weights_fingerprint="f" * 64)
        with self.assertRaisesRegex(
            contract.IncompatibleModelError, "differs in weights_fingerprint"
        ):
            contract.check_compatible(built, other)
        # An index from before the weights fingerprint cannot hold to it.
        older = {
            key: value
            for key, value in built.items()
            if key != trust.WEIGHTS_FINGERPRINT
        }
        contract.check_compatible(older, other)


if __name__ == "__main__":
    absltest.main()
