"""Tests for beau_tf.serving.contract: zooms, signature names, fingerprints and
the model identity (its import boundary: tests/test_import_boundary.py)."""

import json
import os
import tempfile
import unittest

from absl.testing import parameterized

from beau_tf.serving import contract


class CheckZoomsTest(parameterized.TestCase):

    def test_good_zooms_become_floats(self):
        self.assertEqual(contract.check_zooms([1, "0.5"]), (1.0, 0.5))

    @parameterized.parameters(((),), ((0.0,),), ((1.5,),), ((1.0, -0.5),))
    def test_bad_zooms_are_rejected(self, zooms):
        with self.assertRaisesRegex(ValueError, r"\(0, 1\]"):
            contract.check_zooms(zooms)


class SignatureTest(unittest.TestCase):

    def test_query_signature(self):
        self.assertEqual(contract.query_signature(True), "query_multiscale")
        self.assertEqual(contract.query_signature(False), "serving_default")

    def test_fingerprint_ignores_key_order_but_not_shapes(self):
        a = {"inputs": {"images": ["string", [None]]}, "outputs": {"e": 1}}
        b = {"outputs": {"e": 1}, "inputs": {"images": ["string", [None]]}}
        c = {"inputs": {"images": ["string", [None, 2]]}, "outputs": {"e": 1}}
        self.assertEqual(
            contract.signature_fingerprint(a), contract.signature_fingerprint(b)
        )
        self.assertNotEqual(
            contract.signature_fingerprint(a), contract.signature_fingerprint(c)
        )


class ModelIdentityTest(unittest.TestCase):

    def test_reads_the_identity_file(self):
        with tempfile.TemporaryDirectory() as version_dir:
            path = os.path.join(version_dir, contract.IDENTITY_FILE)
            os.makedirs(os.path.dirname(path))
            with open(path, "w") as stream:
                json.dump({"model_name": "m", "model_version": 3}, stream)
            identity = contract.model_identity(version_dir)
        self.assertEqual(identity["model_version"], 3)

    def test_missing_identity_names_the_folder(self):
        with tempfile.TemporaryDirectory() as version_dir:
            with self.assertRaisesRegex(FileNotFoundError, "beau_tf.export"):
                contract.model_identity(version_dir)
