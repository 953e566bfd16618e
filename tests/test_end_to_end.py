"""The whole chain on the synthetic catalogue: train, export, index, search.

One tiny training run is shared by the tests (module fixture); the command
lines run as users run them, in subprocesses.
"""

import json
import os
import subprocess
import sys

from PIL import Image
import pytest

from beau_tf.data import catalog as catalog_lib
from beau_tf.datasets.synthetic import catalogue as synthetic
from beau_tf.models import extractor as extractor_lib
from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.serving import contract
from beau_tf.training import config as config_lib
from beau_tf.training import trainer
from tests.fixtures import testing

pytestmark = pytest.mark.slow


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=testing.REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args[0]} failed:\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A trained tiny model, exported as version 1, and its catalogue index."""
    root = tmp_path_factory.mktemp("chain")
    data = synthetic.write_synthetic_catalog(
        str(root / "synthetic"),
        num_products=6,
        queries_per_product=1,
        num_backgrounds=2,
        image_size=96,
    )
    workdir = str(root / "run")
    trainer.train(
        config_lib.TrainConfig(
            extractor=extractor_lib.ExtractorConfig(
                backbone="tiny", backbone_weights="none", image_size=64
            ),
            catalog=data.catalog_csv,
            background_dir=data.backgrounds_dir,
            batch_size=4,
            steps=4,
            checkpoint_every=2,
            warmup_steps=1,
            identity_loss_weight=1.0,
        ),
        workdir,
    )
    export_dir = str(root / "exported")
    run(
        "beau_tf.export",
        f"--workdirs={workdir}",
        f"--export_dir={export_dir}",
        "--model_name=beau_tf",
    )
    model = os.path.join(export_dir, "beau_tf", "1")
    index_dir = str(root / "index")
    run(
        "beau_tf.index",
        f"--model={model}",
        f"--catalog={data.catalog_csv}",
        f"--index_dir={index_dir}",
    )
    return dict(
        root=root,
        data=data,
        workdir=workdir,
        export_dir=export_dir,
        model=model,
        index_dir=index_dir,
    )


def test_index_holds_the_catalogue_and_names_the_model(chain):
    bundle = index_dir_lib.load_index(chain["index_dir"])
    items = catalog_lib.list_catalog(chain["data"].catalog_csv)
    assert sorted(bundle.index.item_ids) == [item.item_id for item in items]
    assert bundle.embeddings.shape[0] == len(items)
    assert bundle.manifest["model_identity"]["model_version"] == 1
    bundle.index.check_compatible(contract.model_identity(chain["model"]))


def test_search_prints_json_and_draws_a_contact_sheet(chain):
    queries = catalog_lib.read_queries(chain["data"].queries_csv)
    sheet = str(chain["root"] / "sheet.png")
    result = run(
        "beau_tf.search",
        f"--index={chain['index_dir']}",
        f"--model={chain['model']}",
        f"--query={queries[0].path}",
        f"--query={queries[1].path}",
        "--k=3",
        "--json",
        f"--visualize={sheet}",
    )
    answers = json.loads(result.stdout)
    assert [a["query"] for a in answers] == [queries[0].path, queries[1].path]
    assert all(len(a["results"]) == 3 for a in answers)
    scores = [r["score"] for r in answers[0]["results"]]
    assert scores == sorted(scores, reverse=True)
    assert Image.open(sheet).size[0] > 4 * 128  # query + 3 results per row


def test_search_embeds_queries_multiscale_unless_told_not_to(chain):
    query = catalog_lib.read_queries(chain["data"].queries_csv)[0].path
    answers = {}
    for flag in ("--multiscale", "--nomultiscale"):
        result = run(
            "beau_tf.search",
            f"--index={chain['index_dir']}",
            f"--model={chain['model']}",
            f"--query={query}",
            "--exact",
            "--k=6",  # every product, so both answers hold the same items
            "--json",
            flag,
        )
        answers[flag] = json.loads(result.stdout)[0]["results"]
    scores = {
        flag: {r["item_id"]: r["score"] for r in results}
        for flag, results in answers.items()
    }
    # The same items, scored from different embeddings.
    assert set(scores["--multiscale"]) == set(scores["--nomultiscale"])
    assert any(
        abs(scores["--multiscale"][item] - scores["--nomultiscale"][item])
        > 1e-4
        for item in scores["--multiscale"]
    )


def test_evaluate_reports_exact_and_scann(chain):
    result = run(
        "beau_tf.evaluate",
        f"--model={chain['model']}",
        f"--index={chain['index_dir']}",
        f"--queries={chain['data'].queries_csv}",
        "--qe_k=2",
        "--dba_k=2",
        "--json",
    )
    rows = {row["method"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"exact", "scann", "exact+dba", "exact+dba+qe"}
    assert rows["exact"]["num_queries"] == 6
    # Brute-force ScaNN on 6 items returns exactly what exact search does.
    assert rows["scann"]["scann_recall@7_vs_exact"] == 1.0
    for row in rows.values():
        assert 0.0 <= row["map@7_hits"] <= 1.0


def test_search_refuses_an_index_from_another_model_version(chain):
    run(
        "beau_tf.export",
        f"--workdirs={chain['workdir']}",
        f"--export_dir={chain['export_dir']}",
        "--model_name=beau_tf",
    )
    queries = catalog_lib.read_queries(chain["data"].queries_csv)
    result = run(
        "beau_tf.search",
        f"--index={chain['index_dir']}",
        f"--model={os.path.join(chain['export_dir'], 'beau_tf', '2')}",
        f"--query={queries[0].path}",
        check=False,
    )
    assert result.returncode != 0
    assert "version 1" in result.stderr and "version 2" in result.stderr
    assert "Traceback" not in result.stderr


def test_sharded_embedding_merges_into_the_same_index(chain):
    shard_dir = str(chain["root"] / "shards")
    for shard in range(2):
        run(
            "beau_tf.index",
            f"--model={chain['model']}",
            f"--catalog={chain['data'].catalog_csv}",
            f"--shard_dir={shard_dir}",
            "--num_shards=2",
            f"--shard_index={shard}",
        )
    merged_dir = str(chain["root"] / "merged")
    run(
        "beau_tf.index",
        f"--merge_shards={shard_dir}",
        f"--index_dir={merged_dir}",
    )
    merged = index_dir_lib.load_index(merged_dir)
    whole = index_dir_lib.load_index(chain["index_dir"])
    assert merged.index.item_ids == whole.index.item_ids
    assert abs(merged.embeddings - whole.embeddings).max() < 1e-5


def test_index_is_never_overwritten(chain):
    result = run(
        "beau_tf.index",
        f"--model={chain['model']}",
        f"--catalog={chain['data'].catalog_csv}",
        f"--index_dir={chain['index_dir']}",
        check=False,
    )
    assert result.returncode != 0
    assert "never overwritten" in result.stderr


def test_search_through_tf_serving_grpc(chain):
    from beau_tf.serving import (
        prediction_service,
    )  # pylint: disable=g-import-not-at-top

    server, address = prediction_service.start_server(
        chain["model"], "beau_tf", 1
    )
    try:
        queries = catalog_lib.read_queries(chain["data"].queries_csv)
        remote = run(
            "beau_tf.search",
            f"--index={chain['index_dir']}",
            f"--server={address}",
            f"--query={queries[0].path}",
            "--json",
        )
    finally:
        server.stop(0)
    local = run(
        "beau_tf.search",
        f"--index={chain['index_dir']}",
        f"--model={chain['model']}",
        f"--query={queries[0].path}",
        "--json",
    )
    remote_results = json.loads(remote.stdout)[0]["results"]
    local_results = json.loads(local.stdout)[0]["results"]
    assert [r["item_id"] for r in remote_results] == [
        r["item_id"] for r in local_results
    ]
    for a, b in zip(remote_results, local_results):
        assert abs(a["score"] - b["score"]) < 1e-4


def test_search_with_the_server_down_says_so(chain):
    queries = catalog_lib.read_queries(chain["data"].queries_csv)
    result = run(
        "beau_tf.search",
        f"--index={chain['index_dir']}",
        "--server=127.0.0.1:9",  # discard port: nothing serves gRPC there
        "--timeout=2",
        f"--query={queries[0].path}",
        check=False,
    )
    assert result.returncode != 0
    assert "could not reach TF Serving at 127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_search_of_an_undecodable_image_is_skipped_with_its_name(chain):
    bad = chain["root"] / "not_an_image.jpg"
    bad.write_bytes(b"this is text, not a photo")
    queries = catalog_lib.read_queries(chain["data"].queries_csv)
    result = run(
        "beau_tf.search",
        f"--index={chain['index_dir']}",
        f"--model={chain['model']}",
        f"--query={bad}",
        f"--query={queries[0].path}",
        "--json",
    )
    assert "not_an_image.jpg" in result.stderr
    assert [a["query"] for a in json.loads(result.stdout)] == [queries[0].path]


def test_search_and_evaluate_over_grpc_skip_bad_photos_as_locally(chain):
    from beau_tf.serving import (
        prediction_service,
    )  # pylint: disable=g-import-not-at-top

    bad = chain["root"] / "empty.jpg"
    bad.write_bytes(b"")
    query = catalog_lib.read_queries(chain["data"].queries_csv)[0].path
    searches = [f"--query={bad}", f"--query={query}", "--json"]
    evaluation = [f"--queries={chain['data'].queries_csv}", "--json"]
    server, address = prediction_service.start_server(
        chain["model"], "beau_tf", 1
    )
    try:
        remote = [
            run(*args, f"--index={chain['index_dir']}", f"--server={address}")
            for args in (
                ["beau_tf.search", *searches],
                ["beau_tf.evaluate", *evaluation],
            )
        ]
    finally:
        server.stop(0)
    local = [
        run(*args, f"--index={chain['index_dir']}", f"--model={chain['model']}")
        for args in (
            ["beau_tf.search", *searches],
            ["beau_tf.evaluate", *evaluation],
        )
    ]
    for result in (remote[0], local[0]):
        assert result.stderr.count(f"Skipped: {bad} is empty (0 bytes)") == 1
        assert [a["query"] for a in json.loads(result.stdout)] == [query]
    remote_rows, local_rows = (
        json.loads(r.stdout) for r in (remote[1], local[1])
    )
    assert [r["map@7_hits"] for r in remote_rows] == pytest.approx(
        [r["map@7_hits"] for r in local_rows]
    )
