"""Tests for beau_tf.serving.contract and the query path's import boundary."""

import json
import os
import subprocess
import sys
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


def _modules_loaded_by(module: str) -> set[str]:
    code = (
        f"import sys, {module}; "
        "print(' '.join(m for m in sys.modules if m.startswith('beau_tf')))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(output.split())


class ImportBoundaryTest(parameterized.TestCase):
    """The query path needs the contract, the SavedModel and the index only."""

    def test_contract_imports_nothing_else(self):
        self.assertEqual(
            _modules_loaded_by("beau_tf.serving.contract"),
            {"beau_tf", "beau_tf.serving", "beau_tf.serving.contract"},
        )

    @parameterized.parameters(
        "beau_tf.search", "beau_tf.index", "beau_tf.evaluate"
    )
    def test_query_clis_load_no_training_code(self, cli):
        loaded = _modules_loaded_by(cli)
        self.assertIn("beau_tf.retrieval.index_dir", loaded)
        forbidden = {
            module
            for module in loaded
            if module.startswith(("beau_tf.training", "beau_tf.models"))
            or module in {"beau_tf.data.augment", "beau_tf.data.pipelines"}
        }
        self.assertEqual(forbidden, set())
