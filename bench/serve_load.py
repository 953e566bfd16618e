r"""The search service under load and under faults, next to the bare search.

  python -m bench.serve_load [--export=exported/beau_tf/1 --index=indexes/1] \
      [--clients=8 --requests=240 --rounds=3 --nomultiscale] \
      [--recipe=NAME,EXPORT,INDEX[,RUNTIME] ...]

Needs httpx (in the test extra: pip install -e ".[test]"). Everything runs on
127.0.0.1, for a bounded number of requests (and at most --max_seconds per
run), and stops by itself. Without --export/--index it builds them in the
working folder: an untrained EfficientNet-Lite0 export at 224 px
(`harness.export_untrained`, as python -m beau_tf.export
--backbones=efficientnet_lite0; its ImageNet weights are bundled, no
download) and its index of a synthetic catalogue (`harness.build_index`, as
python -m beau_tf.index). The queries are the synthetic catalogue's in-the-wild photos.

Load: four ways of answering the same photos with the same search settings,
in alternating rounds (rates are the rounds' medians, latencies pooled):
  in-process  the service's own search path without HTTP (prepare_upload,
              the model's query signature, the index), one photo per model
              call, and --clients photos per call;
  service     python -m beau_tf.serve with --clients concurrent clients, with
              micro-batching (--max_batch=16) and without (--max_batch=1);
              both services run throughout, the idle one costs nothing.
It prints requests/s and p50/p95/p99 latency of each, and service / in-process
throughput: what HTTP, uploads and threads cost (the goal is >= 0.8 at 8
clients). The clients run on the same machine as the service.

Faults: the batched service again, with one upload in ten bad (garbage bytes
or a 1x1 PNG) and, a third of the way in, the index copied to version 2 of
its versioned base folder (--index_poll_seconds=0.5). It checks that no good
request fails, every bad one gets a 4xx, the served index version changes,
and that Ctrl-C stops each service cleanly; a failed check exits 1.

Recipes (each --recipe, then the load runs' export): what a user pays for
a recipe when serving it. One batched service each (--max_batch=16, the
recipe's --runtime), --clients concurrent clients, alternating rounds on
the same uploads; requests/s, latencies, and each recipe's requests/s over
the first's. The synthetic photos stand in for real ones: the cost of a
query does not depend on what it shows.

Writes bench/results/serve_load.json (serve_load-recipes.json with
--recipe): one row per run (the load runs and the fault run), the
throughput ratios, the fault checks, and the recipes' rows and ratios.
Figures: bench/RESULTS.md ("Service").
"""

import collections
import dataclasses
import io
import os
import shutil
import statistics
import sys
import threading
import time

from absl import flags
import httpx
import numpy as np
from PIL import Image

from beau_tf.retrieval import index_dir as index_dir_lib
from beau_tf.search_service import embedders
from beau_tf.search_service import index_versions
from beau_tf.search_service import searcher as searcher_lib
from beau_tf.serving import contract
from bench import harness

_EXPORT = flags.DEFINE_string(
    "export", None, "Exported version folder; unset: an untrained Lite0."
)
_INDEX = flags.DEFINE_string(
    "index", None, "Index folder (or base of versions) built from --export."
)
_WORK_DIR = flags.DEFINE_string(
    "work_dir", None, "Working folder (default: a temporary one, removed)."
)
_CLIENTS = flags.DEFINE_integer("clients", 8, "Concurrent clients.")
_REQUESTS = flags.DEFINE_integer(
    "requests", 240, "Requests per run (and in the fault run)."
)
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds of load.")
_MAX_SECONDS = flags.DEFINE_float(
    "max_seconds", 120.0, "A run stops sending after this long."
)
_MULTISCALE = flags.DEFINE_bool(
    "multiscale", True, "Search with query_multiscale (the service default)."
)
_K = flags.DEFINE_integer("k", 5, "Results per search.")
_NUM_PRODUCTS = flags.DEFINE_integer(
    "num_products", 24, "Synthetic catalogue size (2 photos each)."
)
_PHOTO_SIZE = flags.DEFINE_integer(
    "photo_size", 480, "Side of the synthetic photos, px."
)
_BAD_EVERY = flags.DEFINE_integer(
    "bad_every", 10, "In the fault run, every n-th upload is bad."
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 224, "Image size of the export built without --export."
)
_RECIPES = flags.DEFINE_multi_string(
    "recipe",
    [],
    "NAME,EXPORT,INDEX[,RUNTIME]: a recipe's export version folder, an index "
    "built with it and the runtime that runs it (default tensorflow; "
    "openvino* needs python -m beau_tf.convert first). Repeat for each; "
    "they are served beside the load runs' export (--export, or the "
    "untrained Lite0), each by its own batched service at --clients, side "
    "by side in alternating rounds, and compared with the first.",
)
_POLL_SECONDS = flags.DEFINE_float(
    "index_poll_seconds",
    0.5,
    "The fault run's service checks its index folder this often.",
)

# The fault run needs the index swap to land while requests still arrive:
# a short poll keeps that true when the few smoke requests run fast.
SMOKE = {
    "clients": 2,
    "requests": 32,
    "rounds": 1,
    "num_products": 4,
    "photo_size": 128,
    "bad_every": 4,
    "index_poll_seconds": 0.1,
    "image_size": 64,
}

_BATCHED = 16


@dataclasses.dataclass(frozen=True)
class Outcome:
    kind: str
    status: int | None  # None: no HTTP answer
    seconds: float
    index_version: int | None = None
    error: str = ""


@dataclasses.dataclass
class Contender:
    """One way of answering, with what its rounds measured."""

    name: str
    clients: int
    max_batch: int
    run: object  # uploads -> (seconds per request, wall seconds)
    rates: list = dataclasses.field(default_factory=list)
    seconds: list = dataclasses.field(default_factory=list)
    mean_batch: str = ""

    def record(self, seconds: list[float], wall: float) -> None:
        self.rates.append(len(seconds) / wall)
        self.seconds += seconds

    @property
    def per_second(self) -> float:
        return statistics.median(self.rates)

    def measure(self, uploads) -> float:
        """One round: runs `uploads`, records and returns requests/s."""
        self.record(*self.run(uploads))
        return self.rates[-1]

    def row(self) -> dict:
        p50, p95, p99 = np.percentile(
            np.asarray(self.seconds) * 1000.0, [50, 95, 99]
        )
        return {
            "run": self.name,
            "clients": self.clients,
            "max batch": self.max_batch,
            "requests": len(self.seconds),
            "requests/s": self.per_second,
            "p50 ms": p50,
            "p95 ms": p95,
            "p99 ms": p99,
            "images per model call": self.mean_batch,
            "rounds": self.rates,
        }


def index_folder(path: str) -> str:
    """The folder the service serves first for --index=`path`."""
    if index_versions.is_index_folder(path):
        return path
    return os.path.join(path, str(index_versions.list_versions(path)[-1]))


def bad_uploads() -> list[harness.Upload]:
    one_pixel = io.BytesIO()
    Image.new("RGB", (1, 1)).save(one_pixel, format="PNG")
    garbage = np.random.default_rng(0).integers(0, 256, 4096, np.uint8)
    return [
        harness.Upload("garbage.jpg", garbage.tobytes(), "garbage bytes"),
        harness.Upload("one_pixel.png", one_pixel.getvalue(), "1x1 PNG"),
    ]


def schedule(
    photos: list[harness.Upload], count: int, bad_every: int = 0
) -> list:
    """`count` uploads cycling through `photos`; every `bad_every`-th bad."""
    bad = bad_uploads()
    uploads = []
    for number in range(count):
        if bad_every and number % bad_every == bad_every - 1:
            uploads.append(bad[(number // bad_every) % len(bad)])
        else:
            uploads.append(photos[number % len(photos)])
    return uploads


def make_in_process_search(model_dir, index_path, multiscale, k):
    """The service's search path without HTTP, as a function of a batch of
    uploads: prepare each, embed them in one model call, search the index."""
    model = embedders.load_local_model(model_dir)
    embedders.warm_up(model)
    index = index_dir_lib.load_index(index_folder(index_path)).index
    embed = model.embed_fns[contract.query_signature(multiscale)]
    config = searcher_lib.ServiceConfig()
    k = min(k, index.num_items)

    def search(group: list[harness.Upload]) -> None:
        prepared = [
            searcher_lib.prepare_upload(upload.data, upload.name, config)
            for upload in group
        ]
        embedded = embed(prepared)
        assert set(embedded.statuses) == {contract.STATUS_OK}
        index.search(embedded.embeddings, k)  # (B, D)

    return search


def in_process_run(search, batch: int):
    """`uploads -> (seconds, wall)`, `batch` uploads per call."""

    def run(uploads):
        seconds = []
        started = time.perf_counter()
        for start in range(0, len(uploads), batch):
            group = uploads[start : start + batch]
            call_started = time.perf_counter()
            search(group)
            # Every photo of a batch waits for the whole batch.
            seconds += [time.perf_counter() - call_started] * len(group)
        return seconds, time.perf_counter() - started

    return run


def send_load(url, uploads, clients, params, max_seconds, on_done=None):
    """Sends `uploads` from `clients` threads, each waiting for its answer
    before sending the next; stops sending after `max_seconds`.

    Returns:
      `(outcomes in completion order, wall seconds)`.
    """
    pending = iter(uploads)
    lock = threading.Lock()
    outcomes = []
    deadline = time.monotonic() + max_seconds

    def client():
        with httpx.Client(timeout=120.0) as session:
            while time.monotonic() < deadline:
                with lock:
                    upload = next(pending, None)
                if upload is None:
                    return
                started = time.perf_counter()
                try:
                    response = session.post(
                        f"{url}/search",
                        params=params,
                        files={"image": (upload.name, upload.data)},
                    )
                    body = response.json()
                    outcome = Outcome(
                        upload.kind,
                        response.status_code,
                        time.perf_counter() - started,
                        (body.get("index") or {}).get("version"),
                        body.get("error", ""),
                    )
                except (httpx.HTTPError, ValueError) as error:
                    outcome = Outcome(
                        upload.kind,
                        None,
                        time.perf_counter() - started,
                        error=f"{type(error).__name__}: {error}",
                    )
                with lock:
                    outcomes.append(outcome)
                    done = len(outcomes)
                if on_done is not None:
                    on_done(done)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, time.perf_counter() - started


def service_run(service: harness.Service, clients: int, params: dict):
    """`uploads -> (seconds, wall)` through `service`; every answer must be
    a 200."""

    def run(uploads):
        outcomes, wall = send_load(
            service.url, uploads, clients, params, _MAX_SECONDS.value
        )
        failed = [o for o in outcomes if o.status != 200]
        if failed or len(outcomes) != len(uploads):
            raise RuntimeError(
                f"{len(failed)} of {len(outcomes)} answered requests failed "
                f"({len(uploads)} planned): {failed[:3]}"
            )
        return [o.seconds for o in outcomes], wall

    return run


def mean_batch(stats: dict, signature: str, before: dict) -> str:
    """Images per model call between two /stats answers."""
    now, then = (
        stats["model_calls"][signature],
        before["model_calls"][signature],
    )
    calls = now["calls"] - then["calls"]
    return f"{(now['images'] - then['images']) / max(calls, 1):.1f}"


def load_runs(model_dir, index, photos, params, work) -> list[Contender]:
    """The four contenders in alternating rounds on the same uploads."""
    clients, multiscale = _CLIENTS.value, params["multiscale"] == "true"
    search = make_in_process_search(model_dir, index, multiscale, _K.value)
    services = {
        max_batch: harness.Service(
            model_dir,
            index,
            os.path.join(work, f"serve_max_batch_{max_batch}.log"),
            max_batch=max_batch,
        )
        for max_batch in (_BATCHED, 1)
    }
    contenders = [
        Contender(
            "in-process, 1 photo per call", 1, 1, in_process_run(search, 1)
        ),
        Contender(
            f"in-process, {clients} photos per call",
            1,
            clients,
            in_process_run(search, clients),
        ),
    ] + [
        Contender(
            f"service, max_batch={max_batch}",
            clients,
            max_batch,
            service_run(service, clients, params),
        )
        for max_batch, service in services.items()
    ]
    rounds_of(contenders, list(services.values()), photos, multiscale)
    return contenders


def rounds_of(contenders, services, photos, multiscale) -> None:
    """Waits for `services`, warms every contender up, runs them side by
    side in alternating rounds on the same uploads, then stops the
    services; the last `len(services)` contenders are theirs, in order, and
    get their images per model call."""
    clients = _CLIENTS.value
    try:
        for service in services:
            service.wait_until_ready()
        uploads = schedule(photos, _REQUESTS.value)
        for contender in contenders:  # warm-up: first calls, connections
            contender.run(uploads[: 2 * clients])
        before = [service.get("/stats") for service in services]
        harness.side_by_side(
            {c.name: lambda c=c: c.measure(uploads) for c in contenders},
            _ROUNDS.value,
        )
        signature = contract.query_signature(multiscale)
        served = contenders[len(contenders) - len(services) :]
        for contender, service, then in zip(served, services, before):
            contender.mean_batch = mean_batch(
                service.get("/stats"), signature, then
            )
    finally:
        for service in services:
            if not service.stop():
                print(
                    f"the service did not stop cleanly:\n{service.log_tail()}"
                )


def recipe_runs(recipes, photos, params, work) -> list[Contender]:
    """Each recipe's batched service at --clients, side by side in
    alternating rounds on the same uploads."""
    clients, multiscale = _CLIENTS.value, params["multiscale"] == "true"
    services = [
        harness.Service(
            recipe.model_dir,
            recipe.index,
            os.path.join(work, f"serve_recipe_{number}.log"),
            max_batch=_BATCHED,
            runtime=recipe.runtime,
        )
        for number, recipe in enumerate(recipes)
    ]
    contenders = [
        Contender(
            f"recipe: {recipe.name}",
            clients,
            _BATCHED,
            service_run(service, clients, params),
        )
        for recipe, service in zip(recipes, services)
    ]
    rounds_of(contenders, services, photos, multiscale)
    return contenders


def fault_run(model_dir, index, photos, params, work) -> tuple[dict, list]:
    """Bad uploads and an index swap under load; returns (report, problems)."""
    base = os.path.join(work, "versioned_index")
    shutil.rmtree(base, ignore_errors=True)
    shutil.copytree(index_folder(index), os.path.join(base, "1"))
    service = harness.Service(
        model_dir,
        base,
        os.path.join(work, "serve_faults.log"),
        max_batch=_BATCHED,
        index_poll_seconds=_POLL_SECONDS.value,
    )
    uploads = schedule(photos, _REQUESTS.value, _BAD_EVERY.value)
    swapped = threading.Event()

    def swap_index(done):
        # Written aside and renamed into place, as python -m beau_tf.index
        # writes a version, so the service never sees half an index.
        if done >= len(uploads) // 3 and not swapped.is_set():
            swapped.set()
            staging = os.path.join(base, ".2.tmp")
            shutil.copytree(os.path.join(base, "1"), staging)
            os.rename(staging, os.path.join(base, "2"))

    try:
        service.wait_until_ready()
        outcomes, wall = send_load(
            service.url,
            uploads,
            _CLIENTS.value,
            params,
            _MAX_SECONDS.value,
            swap_index,
        )
        final_version = service.get("/readyz")["index"]["version"]
    finally:
        clean_stop = service.stop()
    good = [o for o in outcomes if o.kind == "good"]
    bad = [o for o in outcomes if o.kind != "good"]
    summary = Contender(
        "service, max_batch=16, with faults", _CLIENTS.value, _BATCHED, None
    )
    summary.record([o.seconds for o in good], wall)
    report = {
        "summary": summary,
        "good": len(good),
        "good_failed": sum(o.status != 200 for o in good),
        "bad": len(bad),
        "bad_4xx": sum(
            o.status is not None and 400 <= o.status < 500 for o in bad
        ),
        "bad_answers": collections.Counter((o.kind, o.status) for o in bad),
        "versions": collections.Counter(o.index_version for o in good),
        "final_version": final_version,
        "clean_stop": clean_stop,
    }
    problems = []
    if len(outcomes) != len(uploads):
        problems.append(f"only {len(outcomes)} of {len(uploads)} requests sent")
    if report["good_failed"]:
        failed = [o for o in good if o.status != 200]
        problems.append(f"{len(failed)} good requests failed: {failed[:3]}")
    if report["bad_4xx"] != len(bad):
        problems.append(f"bad uploads answered {dict(report['bad_answers'])}")
    if final_version != 2 or not report["versions"].get(2):
        problems.append(
            "the index was not swapped: versions served "
            f"{dict(report['versions'])}, finally {final_version}"
        )
    if not clean_stop:
        problems.append(f"Ctrl-C did not stop cleanly:\n{service.log_tail()}")
    return report, problems


def report(load: list[Contender], faults: dict) -> tuple[list, dict]:
    """Prints the runs' table, the ratios and the fault checks; returns the
    rows and the ratios."""
    rows = [contender.row() for contender in load + [faults["summary"]]]
    rows[-1]["requests"] = f"{rows[-1]['requests']} good"
    harness.print_table(rows)
    ratios = {
        f"{service.name} / {baseline.name}": service.per_second
        / baseline.per_second
        for service in load[2:]
        for baseline in load[:2]
    }
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}")
    answers = ", ".join(
        f"{kind} → {status}: {count}"
        for (kind, status), count in sorted(faults["bad_answers"].items())
    )
    versions = ", ".join(
        f"v{version}: {count}"
        for version, count in sorted(faults["versions"].items())
    )
    print(
        f"\nfaults: {faults['good']} good uploads, {faults['good_failed']} "
        f"failed; {faults['bad']} bad, {faults['bad_4xx']} answered 4xx "
        f"({answers}); index versions that answered good uploads: "
        f"{versions}; served at the end: v{faults['final_version']}; clean "
        f"Ctrl-C stops: {'yes' if faults['clean_stop'] else 'NO'}"
    )
    return rows, ratios


def report_recipes(served: list[Contender]) -> tuple[list, dict]:
    """Prints the recipes' table and each one's requests/s over the
    first's; returns the rows and the ratios."""
    rows = [contender.row() for contender in served]
    print(f"\nRecipes, {_CLIENTS.value} clients each, side by side:")
    harness.print_table(rows)
    first = served[0]
    ratios = {
        f"{contender.name} / {first.name}": contender.per_second
        / first.per_second
        for contender in served[1:]
    }
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}")
    return rows, ratios


def main(argv):
    del argv
    recipes = [harness.parse_recipe(text) for text in _RECIPES.value]
    work = _WORK_DIR.value or harness.work_dir()
    os.makedirs(work, exist_ok=True)
    print(f"Preparing in {work} ...")
    model_dir, index, photos = harness.service_inputs(
        work,
        _NUM_PRODUCTS.value,
        _PHOTO_SIZE.value,
        _IMAGE_SIZE.value,
        _EXPORT.value,
        _INDEX.value,
    )
    params = {"k": _K.value, "multiscale": str(_MULTISCALE.value).lower()}
    print(
        f"{len(photos)} photos of {_PHOTO_SIZE.value} px, "
        f"{_REQUESTS.value} requests per run, {_ROUNDS.value} rounds ..."
    )
    load = load_runs(model_dir, index, photos, params, work)
    faults, problems = fault_run(model_dir, index, photos, params, work)
    rows, ratios = report(load, faults)
    recipe_rows, recipe_ratios = [], {}
    if recipes:
        served = recipes + [
            harness.Recipe("the load runs' export", model_dir, index)
        ]
        recipe_rows, recipe_ratios = report_recipes(
            recipe_runs(served, photos, params, work)
        )
    harness.write_results(
        rows,
        variant="recipes" if recipes else None,
        ratios=ratios,
        recipes=recipe_rows,
        recipe_ratios=recipe_ratios,
        faults={
            "good": faults["good"],
            "good_failed": faults["good_failed"],
            "bad": faults["bad"],
            "bad_4xx": faults["bad_4xx"],
            "bad_answers": [
                {"kind": kind, "status": status, "count": count}
                for (kind, status), count in faults["bad_answers"].items()
            ],
            "versions": {str(v): n for v, n in faults["versions"].items()},
            "final_version": faults["final_version"],
            "clean_stop": faults["clean_stop"],
            "problems": problems,
        },
    )
    if problems:
        sys.exit("FAILED: " + "; ".join(problems))


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
