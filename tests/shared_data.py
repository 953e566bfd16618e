"""Where the shared benchmark data lives; tests that need it skip without it."""

import os
import pathlib

import pytest


def shared_data_dir() -> pathlib.Path:
    """`../shared/data` beside the checkout, or $BEAU_TF_SHARED_DATA."""
    override = os.environ.get("BEAU_TF_SHARED_DATA")
    if override:
        return pathlib.Path(override)
    return pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def grocery_dataset_dir() -> pathlib.Path:
    """The GroceryStoreDataset `dataset/` folder; skips the test when absent."""
    path = shared_data_dir() / "grocery-store" / "dataset"
    if not (path / "classes.csv").exists():
        pytest.skip(f"shared data not found at {path}")
    return path
