"""Helpers shared by the tests."""

import tempfile


def make_tempdir(test_case, prefix: str = "beau_tf_") -> str:
    """A fresh directory removed after the test (works without absl flags)."""
    directory = tempfile.TemporaryDirectory(prefix=prefix)
    test_case.addCleanup(directory.cleanup)
    return directory.name
