"""Shared test set-up: quiet TensorFlow and the `slow` marker."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # pylint: disable=g-import-not-at-top


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slow: takes more than a few seconds; run with --run-slow "
        "(CI runs them).",
    )


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run tests marked slow",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow; pass --run-slow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
