"""The bad-input corpus through every entry point, as a user runs them.

One catalogue folder holds every case of `tests/fixtures/bad_inputs.py`
(zero-byte, text named .png, truncated JPEG, 1×1, CMYK, 16-bit PNG, palette +
alpha, TIFF, animated GIF, EXIF-rotated, 12000×12000). Train, export (PCA and
adaptation inputs), index, search (local and over gRPC) and evaluate all
run on it, and, where OpenVINO is installed, convert and index, search and
evaluate with --runtime=openvino: each must succeed, keep every usable file, and skip each unusable
one with one line that names it and says why. Then each fatal mistake (a
folder or a missing file as a query, malformed CSV rows, unknown ids, a
taken output) must end in one `error:` line, before any work, with what
was already written left as it was.
"""

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest

from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.serving import runtimes
from tests.fixtures import bad_inputs
from tests.fixtures import converted
from tests.fixtures import testing

pytestmark = pytest.mark.slow

# The user's environment, not the tests' quieter one: what they see is tested.
ENVIRONMENT = {
    key: value
    for key, value in os.environ.items()
    if key != "TF_CPP_MIN_LOG_LEVEL"
}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=testing.REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=ENVIRONMENT,
    )


def succeeded(
    result: subprocess.CompletedProcess,
) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def write_csv(path: str, header: str, rows: list[str]) -> str:
    with open(path, "w") as stream:
        stream.write("\n".join([header, *rows]) + "\n")
    return path


def digest(path: str) -> str:
    """sha256 over every file under `path` (or of the file), names included."""
    sha = hashlib.sha256()
    paths = [path]
    if os.path.isdir(path):
        paths = sorted(
            os.path.join(folder, name)
            for folder, _, names in os.walk(path)
            for name in names
        )
    for each in paths:
        sha.update(os.path.relpath(each, path).encode())
        with open(each, "rb") as stream:
            sha.update(stream.read())
    return sha.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The corpus, and what every command made of it."""
    root = str(tmp_path_factory.mktemp("bad_inputs"))
    corpus = os.path.join(root, "corpus")
    cases = bad_inputs.write_corpus(corpus)
    usable = [case for case in cases if case.reason is None]
    workdir = os.path.join(root, "run")
    export_dir = os.path.join(root, "exported")
    model = os.path.join(export_dir, "beau_tf", "1")
    index = os.path.join(root, "index")
    queries = write_csv(
        os.path.join(root, "queries.csv"),
        "path,item_id",
        [f"corpus/{case.filename},plain" for case in cases],
    )
    results = {}
    results["train"] = run(
        "beau_tf.train",
        f"--workdir={workdir}",
        f"--catalog={corpus}",
        "--backbone=tiny",
        "--backbone_weights=none",
        "--image_size=64",
        "--batch_size=2",
        "--steps=2",
        "--checkpoint_every=2",
        "--warmup_steps=1",
    )
    results["export"] = run(
        "beau_tf.export",
        f"--workdirs={workdir}",
        f"--export_dir={export_dir}",
        "--pca_dim=4",
        f"--pca_catalog={corpus}",
        f"--adapt_photos={corpus}",
        f"--adapt_catalog={corpus}",
        "--adapt_dim=2",
        "--adapt_rounds=1",
        "--adapt_pca_dim=0",
    )
    results["index"] = run(
        "beau_tf.index",
        f"--model={model}",
        f"--catalog={corpus}",
        f"--index_dir={index}",
    )
    results["search"] = run(
        "beau_tf.search",
        f"--index={index}",
        f"--model={model}",
        f"--query_dir={corpus}",
        "--json",
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "beau_tf.dev_server",
            f"--model_base={os.path.dirname(model)}",
            "--port=0",
        ],
        cwd=testing.REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=ENVIRONMENT,
    )
    try:
        banner = server.stdout.readline()
        address = re.search(r"at (\S+:\d+)", banner).group(1)
        results["search --server"] = run(
            "beau_tf.search",
            f"--index={index}",
            f"--server={address}",
            f"--query_dir={corpus}",
            "--json",
        )
        results["evaluate --server"] = run(
            "beau_tf.evaluate",
            f"--index={index}",
            f"--server={address}",
            f"--queries={queries}",
            "--json",
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    results["evaluate"] = run(
        "beau_tf.evaluate",
        f"--index={index}",
        f"--model={model}",
        f"--queries={queries}",
        "--json",
    )
    if runtimes.installed():  # the optional runtime, where installed
        results.update(with_runtime(root, corpus, model, index, queries))
    return dict(
        root=root,
        corpus=corpus,
        cases=cases,
        usable=usable,
        workdir=workdir,
        export_dir=export_dir,
        model=model,
        index=index,
        results=results,
    )


def with_runtime(root, corpus, model, index, queries) -> dict:
    """The model converted for OpenVINO on the corpus, then index, search
    and evaluate run by the copy (search of the index the SavedModel
    built). Float32: int8's error on this 2-step model's 2-d adapted
    embeddings is beyond its tolerance (tests/serving cover int8)."""
    runtime = "--runtime=openvino"
    index_converted = os.path.join(root, "index_converted")
    return {
        "convert": run(
            "beau_tf.convert",
            f"--model={model}",
            runtime,
            f"--catalog={corpus}",
        ),
        "index --runtime": run(
            "beau_tf.index",
            f"--model={model}",
            f"--catalog={corpus}",
            f"--index_dir={index_converted}",
            runtime,
        ),
        "search --runtime": run(
            "beau_tf.search",
            f"--index={index}",
            f"--model={model}",
            f"--query_dir={corpus}",
            "--json",
            runtime,
        ),
        "evaluate --runtime": run(
            "beau_tf.evaluate",
            f"--index={index_converted}",
            f"--model={model}",
            f"--queries={queries}",
            "--json",
            runtime,
        ),
    }


COMMANDS = (
    "train",
    "export",
    "index",
    "search",
    "search --server",
    "evaluate",
    "evaluate --server",
)
RUNTIME_COMMANDS = (
    "convert",
    "index --runtime",
    "search --runtime",
    "evaluate --runtime",
)


@pytest.mark.parametrize("command", COMMANDS + RUNTIME_COMMANDS)
def test_each_unusable_file_is_one_line_and_the_rest_go_on(world, command):
    if command in RUNTIME_COMMANDS:
        converted.require_openvino()
    result = succeeded(world["results"][command])
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    for case in world["cases"]:
        naming = [line for line in lines if case.filename in line]
        if case.reason is None:
            assert not naming, (case.filename, naming)
        else:
            # The export reads the corpus twice (PCA, adaptation), and
            # the adaptation reads it as catalogue and as photos.
            expected = {"export": 3}.get(command, 1)
            assert len(naming) == expected, (case.filename, naming)
            assert all(re.search(case.reason, line) for line in naming)


def test_the_index_holds_exactly_the_usable_files(world):
    bundle = index_dir_lib.load_index(world["index"])
    assert sorted(bundle.index.item_ids) == sorted(
        os.path.splitext(case.filename)[0] for case in world["usable"]
    )


@pytest.mark.parametrize(
    "command", ("search", "search --server", "search --runtime")
)
def test_search_answers_for_exactly_the_usable_files(world, command):
    if command in RUNTIME_COMMANDS:
        converted.require_openvino()
    answers = json.loads(world["results"][command].stdout)
    answered = sorted(os.path.basename(a["query"]) for a in answers)
    assert answered == sorted(case.filename for case in world["usable"])


def test_local_and_served_answers_agree(world):
    local, served = (
        json.loads(world["results"][command].stdout)
        for command in ("search", "search --server")
    )
    assert [a["results"][0] for a in local] == [a["results"][0] for a in served]
    local, served = (
        json.loads(world["results"][command].stdout)
        for command in ("evaluate", "evaluate --server")
    )
    assert local == served


# Fatal mistakes: (name, command builder, the one line's pattern). Each
# builder gets the world and a contact sheet written earlier, which must
# survive like every other output.
def _query(world, sheet, command, *inputs):
    """`command` against the index and model, with a contact sheet."""
    return (
        command,
        f"--index={world['index']}",
        f"--model={world['model']}",
        *inputs,
        f"--visualize={sheet}",
    )


def _query_folder(world, sheet):
    return _query(world, sheet, "beau_tf.search", f"--query={world['corpus']}")


def _missing_query(world, sheet):
    return _query(
        world, sheet, "beau_tf.search", f"--query={world['corpus']}/gone.jpg"
    )


def _only_unusable_queries(world, sheet):
    return _query(
        world,
        sheet,
        "beau_tf.search",
        f"--query={world['corpus']}/zero_byte.jpg",
        f"--query={world['corpus']}/text.png",
    )


def _evaluate(world, sheet, filename, rows):
    queries = write_csv(
        os.path.join(world["root"], filename), "path,item_id", rows
    )
    return _query(world, sheet, "beau_tf.evaluate", f"--queries={queries}")


def _unknown_ids(world, sheet):
    return _evaluate(
        world,
        sheet,
        "unknown.csv",
        [
            "corpus/plain.jpg,plain",
            "corpus/cmyk.jpg,lipstick",
            "corpus/photo.tif,mascara",
        ],
    )


def _malformed_query_row(world, sheet):
    return _evaluate(
        world,
        sheet,
        "malformed.csv",
        ["corpus/plain.jpg,plain", "corpus/cmyk.jpg"],
    )


def _taken_index_dir(world, sheet):
    del sheet
    return (
        "beau_tf.index",
        f"--model={world['model']}",
        f"--catalog={world['corpus']}",
        f"--index_dir={world['index']}",
    )


def _catalogue_row_with_a_folder(world, sheet):
    del sheet
    os.makedirs(os.path.join(world["root"], "shelf"), exist_ok=True)
    catalogue = write_csv(
        os.path.join(world["root"], "with_folder.csv"),
        "item_id,path",
        ["plain,corpus/plain.jpg", "shelf,shelf"],
    )
    return (
        "beau_tf.index",
        f"--model={world['model']}",
        f"--catalog={catalogue}",
        f"--index_dir={world['root']}/never_written",
    )


def _catalogue_row_with_extra_values(world, sheet):
    del sheet
    catalogue = write_csv(
        os.path.join(world["root"], "extra.csv"),
        "item_id,path",
        ["plain,corpus/plain.jpg", "cmyk,corpus/cmyk.jpg,oops"],
    )
    return (
        "beau_tf.train",
        f"--workdir={world['root']}/never_trained",
        f"--catalog={catalogue}",
        "--backbone=tiny",
        "--backbone_weights=none",
        "--image_size=64",
        "--steps=2",
        "--checkpoint_every=2",
    )


def _missing_adaptation_photos(world, sheet):
    del sheet
    return (
        "beau_tf.export",
        f"--workdirs={world['workdir']}",
        f"--export_dir={world['export_dir']}",
        f"--adapt_photos={world['root']}/no_photos",
        f"--adapt_catalog={world['corpus']}",
    )


FATAL = (
    ("a folder as --query", _query_folder, r"corpus is a folder.*--query_dir"),
    ("a missing --query", _missing_query, r"gone\.jpg does not exist"),
    (
        "only unusable queries",
        _only_unusable_queries,
        r"None of the 2 images could be embedded",
    ),
    (
        "unknown item ids",
        _unknown_ids,
        r"unknown\.csv: 2 of 3 queries name products the index does not hold",
    ),
    (
        "a query row without an item id",
        _malformed_query_row,
        r"malformed\.csv, line 3: empty or missing item_id",
    ),
    (
        "a taken --index_dir",
        _taken_index_dir,
        r"index exists and is not empty",
    ),
    (
        "a folder listed as a catalogue image",
        _catalogue_row_with_a_folder,
        r"with_folder\.csv lists 1 image file.*shelf \(a folder\)",
    ),
    (
        "a catalogue row with more values than the header",
        _catalogue_row_with_extra_values,
        r"extra\.csv, line 3: more values than the header",
    ),
    (
        "missing adaptation photos",
        _missing_adaptation_photos,
        r"no_photos",
    ),
)


@pytest.mark.parametrize(
    "builder, pattern",
    [(builder, pattern) for _, builder, pattern in FATAL],
    ids=[name for name, _, _ in FATAL],
)
def test_each_mistake_is_one_line_and_damages_nothing(world, builder, pattern):
    sheet = os.path.join(world["root"], "sheet.png")
    with open(sheet, "wb") as stream:
        stream.write(b"an earlier contact sheet")
    written = [sheet, world["index"], world["export_dir"], world["workdir"]]
    before = {path: digest(path) for path in written}
    listing = sorted(os.listdir(world["root"]))

    result = run(*builder(world, sheet))

    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-3000:]
    assert re.search(pattern, last), last
    assert {path: digest(path) for path in written} == before
    new = set(os.listdir(world["root"])) - set(listing)
    assert not {name for name in new if name.startswith("never")}, new
