"""Tests for beau_tf.serving.contract: zooms, signature names, fingerprints,
the model identity and which models an index accepts (its import boundary:
tests/test_import_boundary.py)."""

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


class CheckMaskViewsTest(unittest.TestCase):

    def test_paddings_need_the_whole_photo_among_the_zooms(self):
        self.assertEqual(
            contract.check_mask_views([0.25, "1"], (1.0, 0.5)), (0.25, 1.0)
        )
        self.assertEqual(contract.check_mask_views([], (0.5,)), ())
        with self.assertRaisesRegex(ValueError, "zoom 1.0"):
            contract.check_mask_views([0.25], (0.75, 0.5))
        with self.assertRaisesRegex(ValueError, r"\[0, 4\]"):
            contract.check_mask_views([5.0], (1.0,))


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


_BUILT = {
    "model_name": "beau",
    "model_version": 3,
    "signature_fingerprint": "abc123def456789",
    "model_fingerprint": "0123456789abcdef",
    "embedding_dim": 32,
}
_SOURCE = "TF Serving at localhost:8500"


class CompatibilityTest(unittest.TestCase):
    """Which models may embed for an index, decided once for every path."""

    def test_the_same_model_is_compatible(self):
        contract.check_compatible(_BUILT, dict(_BUILT, members=["x"]))
        older = {k: v for k, v in _BUILT.items() if k != "model_fingerprint"}
        contract.check_compatible(older, dict(older))  # both older exports

    def test_another_model_is_named_with_what_differs(self):
        other = dict(_BUILT, model_version=4, model_fingerprint="fedcba")
        with self.assertRaises(contract.IncompatibleModelError) as caught:
            contract.check_compatible(_BUILT, other, "index indexes/v1")
        message = str(caught.exception)
        self.assertIsInstance(caught.exception, ValueError)
        self.assertIn(
            "index indexes/v1 was built with model beau version 3 (signature "
            "abc123def456…, model fingerprint 0123456789ab…, 32-d embeddings)",
            message,
        )
        self.assertIn("the model given is model beau version 4", message)
        self.assertIn("model fingerprint fedcba,", message)
        self.assertIn("differs in model_version, model_fingerprint", message)
        self.assertIn("rebuild the index with python -m beau_tf.index", message)

    def test_an_older_index_accepts_only_an_older_model(self):
        older = {k: v for k, v in _BUILT.items() if k != "model_fingerprint"}
        with self.assertRaisesRegex(
            contract.IncompatibleModelError,
            r"no model fingerprint.*model fingerprint 0123456789ab….*"
            r"differs in model_fingerprint",
        ):
            contract.check_compatible(older, _BUILT)

    def test_answers_are_held_to_the_index_fingerprint(self):
        self.assertEqual(
            contract.fingerprint_to_hold(_BUILT, _SOURCE), "0123456789abcdef"
        )
        older = {k: v for k, v in _BUILT.items() if k != "model_fingerprint"}
        with self.assertRaisesRegex(
            contract.IncompatibleModelError,
            "index x was built from beau version 3 exported without a model "
            "fingerprint.*older beau_tf.*TF Serving at localhost:8500"
            ".*rebuild the index",
        ):
            contract.fingerprint_to_hold(older, _SOURCE, "index x")

    def test_an_answer_of_the_index_model_passes(self):
        contract.check_answer(_BUILT, 3, "0123456789abcdef", _SOURCE)
        contract.check_answer(_BUILT, None, "0123456789abcdef", _SOURCE)

    def test_an_answer_of_another_version_is_refused(self):
        with self.assertRaisesRegex(
            contract.IncompatibleModelError,
            "TF Serving at localhost:8500 answered with beau version 4, but "
            "index x was built from version 3; serve that version",
        ):
            contract.check_answer(
                _BUILT, 4, "0123456789abcdef", _SOURCE, "index x"
            )

    def test_an_answer_of_other_weights_is_refused(self):
        with self.assertRaises(contract.IncompatibleModelError) as caught:
            contract.check_answer(_BUILT, 3, "fedcba9876543210", _SOURCE, "i")
        message = str(caught.exception)
        self.assertIn(f"{_SOURCE} answers as beau version 3", message)
        self.assertIn("model fingerprint fedcba987654…", message)
        self.assertIn("i was built from beau version 3", message)
        self.assertIn("model fingerprint 0123456789ab…", message)
        self.assertIn("rebuild the index", message)

    def test_a_signature_without_statuses_is_an_older_export(self):
        contract.check_outputs(
            ["embedding", "mask", "model_fingerprint", "status"], "m"
        )
        with self.assertRaisesRegex(
            contract.IncompatibleModelError,
            r"m's 'serving_default' signature returns \['embedding'\], "
            r"without \['model_fingerprint', 'status'\]: it was exported by "
            r"an older beau_tf; re-export it with python -m beau_tf.export",
        ):
            contract.check_outputs(
                ["embedding"], "m's 'serving_default' signature"
            )

    def test_query_signatures(self):
        self.assertEqual(
            contract.QUERY_SIGNATURES, ("serving_default", "query_multiscale")
        )
