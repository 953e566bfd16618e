"""bench.serve_load's recipes: what --recipe accepts (`harness.parse_recipe`),
and a served run."""

import json
import os
import pathlib
import sys

import pytest

from bench import harness
from tests.fixtures import processes

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(name="folders")
def _folders(tmp_path):
    """An export folder and an index folder (empty: parsing only checks
    that they exist)."""
    export, index = tmp_path / "exported", tmp_path / "index"
    export.mkdir()
    index.mkdir()
    return str(export), str(index)


def test_recipe_fields_and_default_runtime(folders):
    export, index = folders
    recipe = harness.parse_recipe(f"lite0,{export},{index}")
    assert recipe == harness.Recipe("lite0", export, index)
    assert recipe.runtime == "tensorflow"
    recipe = harness.parse_recipe(f"lite0,{export},{index},openvino-bf16")
    assert recipe.runtime == "openvino-bf16"


@pytest.mark.parametrize("fields", ["lite0,{export}", ",{export},{index}"])
def test_a_recipe_with_missing_fields_says_what_is_expected(folders, fields):
    export, index = folders
    with pytest.raises(ValueError, match="NAME,EXPORT,INDEX"):
        harness.parse_recipe(fields.format(export=export, index=index))


def test_a_recipe_names_its_missing_folder(folders):
    export, index = folders
    missing = os.path.join(index, "nowhere")
    with pytest.raises(ValueError, match=f"INDEX {missing} is not a folder"):
        harness.parse_recipe(f"lite0,{export},{missing}")


def test_a_recipe_with_an_unknown_runtime_is_refused(folders):
    export, index = folders
    with pytest.raises(ValueError, match="--recipe=.*'onnx' is unknown"):
        harness.parse_recipe(f"lite0,{export},{index},onnx")


def _serve_load(work, *flags, results="serve_load.json"):
    result = processes.run_whole_group(
        [
            sys.executable,
            "-m",
            "bench.serve_load",
            "--smoke",
            f"--work_dir={work}",
            f"--results_dir={work}",
            *flags,
        ],
        cwd=REPO,
        timeout=900,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((work / results).read_text())


@pytest.mark.slow
def test_recipes_are_served_side_by_side_and_compared_with_the_first(
    tmp_path,
):
    # The first run leaves its export and index in the working folder; the
    # second serves them as a recipe beside itself.
    _serve_load(tmp_path)
    model_dir = next(tmp_path.glob("exported/**/saved_model.pb")).parent
    record = _serve_load(
        tmp_path,
        f"--recipe=again,{model_dir},{tmp_path / 'index'}",
        results="serve_load-recipes.json",
    )
    runs = [row["run"] for row in record["recipes"]]
    assert runs == ["recipe: again", "recipe: the load runs' export"]
    assert all(row["requests/s"] > 0 for row in record["recipes"])
    (ratio,) = record["recipe_ratios"].values()
    assert ratio > 0
