"""The package's import boundaries, each checked in a fresh interpreter.

The serving contract imports nothing else of beau_tf. The query path (index,
search, evaluate, the search service and its `serve` command, the
development gRPC server) loads no training, exporting, adaptation,
augmentation or backbone code: it needs the serving contract, the SavedModel
and the index only.
"""

import concurrent.futures
import os
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import pytest

# Every entry point of the query path, and a module its import must load (a
# check that the interpreter imported the real thing).
QUERY_PATH = {
    "beau_tf.index": "beau_tf.retrieval.index_dir",
    "beau_tf.search": "beau_tf.retrieval.index_dir",
    "beau_tf.evaluate": "beau_tf.retrieval.index_dir",
    "beau_tf.serve": "beau_tf.retrieval.index_dir",
    "beau_tf.search_service.app": "beau_tf.retrieval.index_dir",
    "beau_tf.dev_server": "beau_tf.serving.prediction_service",
}
FORBIDDEN_PACKAGES = (
    "beau_tf.training",
    "beau_tf.models",
    "beau_tf.exporting",
    "beau_tf.adaptation",
    "beau_tf.datasets",
)
FORBIDDEN_MODULES = {
    "beau_tf.data.augment",
    "beau_tf.data.pipelines",
    "beau_tf.data.backgrounds",
    "beau_tf.data.products",
    "beau_tf.data.masks",
}


def _modules_loaded_by(module: str) -> set[str]:
    """The beau_tf modules a fresh interpreter holds after `import module`."""
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


class ContractBoundaryTest(absltest.TestCase):

    def test_contract_imports_nothing_else(self):
        self.assertEqual(
            _modules_loaded_by("beau_tf.serving.contract"),
            {"beau_tf", "beau_tf.serving", "beau_tf.serving.contract"},
        )


@pytest.mark.slow  # one interpreter importing TensorFlow per entry point
class QueryPathBoundaryTest(parameterized.TestCase):
    """The query path needs the contract, the SavedModel and the index only."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The interpreters run side by side: each spends seconds importing
        # TensorFlow.
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
            cls.loaded = dict(
                zip(QUERY_PATH, pool.map(_modules_loaded_by, QUERY_PATH))
            )

    @parameterized.parameters(*QUERY_PATH)
    def test_loads_no_training_exporting_or_backbone_code(self, entry_point):
        loaded = self.loaded[entry_point]
        self.assertIn(QUERY_PATH[entry_point], loaded)
        forbidden = {
            module
            for module in loaded
            if module.startswith(FORBIDDEN_PACKAGES)
            or module in FORBIDDEN_MODULES
        }
        self.assertEqual(forbidden, set())


if __name__ == "__main__":
    absltest.main()
