r"""The search service under attack from this machine, next to the same
service without it.

  python -m bench.abuse [--export=exported/beau_tf/1 --index=indexes/1] \
      [--good_clients=4 --good_requests=80 --rounds=3] \
      [--hostile_clients=6 --slow_clients=24 --hostile_side=7000]

Needs httpx (in the test extra). Everything runs on 127.0.0.1 and stops by
itself: each round sends a fixed number of good requests (and stops sending
after --max_seconds), and every attacker stops when its round ends. Without
--export/--index it builds them in the working folder, as bench.serve_load
does: an untrained EfficientNet-Lite0 export at 224 px and its index of a
synthetic catalogue, whose in-the-wild photos are the good uploads.

One service (python -m beau_tf.serve with its defaults, but for
--header_timeout and --body_timeout, shortened so that a round sees slow
clients cut off) answers rounds of two kinds, alternating:
  good only      --good_clients clients, each sending a photo and waiting for
                 its answer before the next;
  good + abuse   the same, while on the same machine
                 - --hostile_clients clients send, over and over, the files
                   of issue 21 made by code (tests/fixtures/bad_inputs):
                   a lossless WebP and a 16-bit PNG of --hostile_side² pixels
                   (a few dozen bytes and ~100 KB), a progressive JPEG whose
                   one scan is repeated 1,000 times, and a JPEG cut short
                   and closed; and posts with another Host name or from
                   another site's page;
                 - --slow_clients connections send their headers a byte
                   every half second, stop half-way through them, or
                   declare a longer upload than they send, and start again
                   when cut off.
It reports, per kind of round, good requests failed (the goal is 0), their
p50/p95/p99 latency, the service's peak resident memory (sampled every
20 ms from /proc; its bound is stated beside it), and how the service
answered each attack. A good request failed, or a peak over the bound, ends
the bench with exit status 1.

Writes bench/results/abuse.json. Figures: bench/RESULTS.md ("Service").
"""

import collections
import dataclasses
import logging
import os
import socket
import statistics
import threading
import time

from absl import flags
import httpx
import numpy as np

from beau_tf.search_service import searcher as searcher_lib
from bench import harness
from tests.fixtures import bad_inputs

_EXPORT = flags.DEFINE_string(
    "export", None, "Exported version folder; unset: an untrained Lite0."
)
_INDEX = flags.DEFINE_string(
    "index", None, "Index folder (or base of versions) built from --export."
)
_WORK_DIR = flags.DEFINE_string(
    "work_dir", None, "Working folder (default: a temporary one, removed)."
)
_GOOD_CLIENTS = flags.DEFINE_integer(
    "good_clients", 4, "Clients sending photos."
)
_GOOD_REQUESTS = flags.DEFINE_integer(
    "good_requests", 80, "Photos sent per round."
)
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds of each kind.")
_HOSTILE_CLIENTS = flags.DEFINE_integer(
    "hostile_clients", 6, "Clients sending hostile files."
)
_SLOW_CLIENTS = flags.DEFINE_integer(
    "slow_clients", 24, "Slow or stalled connections at once."
)
_HOSTILE_SIDE = flags.DEFINE_integer(
    "hostile_side", 7000, "Side, in pixels, the hostile images claim."
)
_SCAN_REPEATS = flags.DEFINE_integer(
    "scan_repeats", 1000, "Repeats of the progressive JPEG's last scan."
)
_MAX_SECONDS = flags.DEFINE_float(
    "max_seconds", 180.0, "A round stops sending after this long."
)
_HEADER_TIMEOUT = flags.DEFINE_float(
    "header_timeout", 5.0, "The service's --header_timeout, seconds."
)
_BODY_TIMEOUT = flags.DEFINE_float(
    "body_timeout", 5.0, "The service's --body_timeout, seconds."
)
_MAX_DECODE_MB = flags.DEFINE_float(
    "max_decode_mb",
    searcher_lib.ServiceConfig().max_decode_bytes / 2**20,
    "The service's --max_decode_mb (its default unless given).",
)
_NUM_PRODUCTS = flags.DEFINE_integer(
    "num_products", 24, "Synthetic catalogue size (2 photos each)."
)
_PHOTO_SIZE = flags.DEFINE_integer(
    "photo_size", 480, "Side of the synthetic photos, px."
)
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 224, "Image size of the export built without --export."
)

SMOKE = {
    "good_clients": 2,
    "good_requests": 12,
    "rounds": 1,
    "hostile_clients": 2,
    "slow_clients": 3,
    "hostile_side": 1500,
    "scan_repeats": 200,
    "header_timeout": 1.0,
    "body_timeout": 1.0,
    # The smoke's hostile files are small: so are its limits.
    "max_decode_mb": 16,
    "num_products": 4,
    "photo_size": 128,
    "image_size": 64,
}

_SAMPLE_SECONDS = 0.02
_SOCKET_SECONDS = 1.0  # each blocking socket call of a slow client
_DEFAULTS = searcher_lib.ServiceConfig()


def hostile_uploads(side: int, repeats: int) -> dict[str, harness.Upload]:
    """The files of issue 21, made here: kind -> upload."""
    return {
        "lossless WebP": harness.Upload(
            "bomb.webp", bad_inputs.lossless_webp(side), "lossless WebP"
        ),
        "16-bit PNG": harness.Upload(
            "bomb.png", bad_inputs.sixteen_bit_png(side), "16-bit PNG"
        ),
        "repeated scans": harness.Upload(
            "scans.jpg",
            bad_inputs.repeated_scan_jpeg(side, repeats),
            "repeated scans",
        ),
        "JPEG cut short": harness.Upload(
            "cut.jpg",
            bad_inputs.truncated_jpeg(min(side, 2000), 11_000),
            "JPEG cut short",
        ),
    }


class MemorySampler:
    """The largest resident memory of a process, sampled until stopped."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, resident_bytes(self.pid))
            self._stop.wait(_SAMPLE_SECONDS)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_bytes


def resident_bytes(pid: int, field: str = "VmRSS") -> int:
    """A /proc/<pid>/status memory field, bytes (0 once the process is
    gone)."""
    try:
        with open(f"/proc/{pid}/status") as stream:
            for line in stream:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def good_clients(url, photos, count, clients, deadline):
    """`count` photos from `clients` clients; returns (seconds, statuses)
    of each, in completion order."""
    pending = iter(range(count))
    lock = threading.Lock()
    seconds, failures = [], []

    def client():
        with httpx.Client(timeout=60.0) as session:
            while time.monotonic() < deadline:
                with lock:
                    number = next(pending, None)
                if number is None:
                    return
                photo = photos[number % len(photos)]
                started = time.perf_counter()
                try:
                    response = session.post(
                        f"{url}/search",
                        files={"image": (photo.name, photo.data)},
                    )
                    failed = response.status_code != 200 and (
                        f"{response.status_code}: {response.text[:200]}"
                    )
                except httpx.HTTPError as error:
                    failed = f"{type(error).__name__}: {error}"
                with lock:
                    seconds.append(time.perf_counter() - started)
                    if failed:
                        failures.append(failed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seconds, failures


def hostile_client(url, uploads, stop, answers, lock):
    """Sends each hostile upload in turn, and posts under another Host name
    or from another site, until `stop`; counts the answers."""
    attacks = [
        (kind, {"files": {"image": (u.name, u.data)}})
        for kind, u in uploads.items()
    ] + [
        (
            "another Host name",
            {"files": {"image": ("p.jpg", b"x")}, "headers": {"host": "x.io"}},
        ),
        (
            "another site's page",
            {
                "files": {"image": ("p.jpg", b"x")},
                "headers": {"origin": "https://x.io"},
            },
        ),
    ]
    with httpx.Client(timeout=60.0) as session:
        number = 0
        while not stop.is_set():
            kind, request = attacks[number % len(attacks)]
            number += 1
            try:
                status = session.post(f"{url}/search", **request).status_code
            except httpx.HTTPError as error:
                status = type(error).__name__
            with lock:
                answers[(kind, status)] += 1


_SLOW_KINDS = ("headers a byte at a time", "headers stopped", "upload short")


def slow_client(address, kind, stop, endings, lock):
    """One slow or stalled connection of `kind`, started again whenever the
    service cuts it off, until `stop`; counts how each ended."""
    host, port = address
    request = f"POST /search HTTP/1.1\r\nHost: {host}\r\n".encode()
    while not stop.is_set():
        ending = "still open at the end of the round"
        try:
            with socket.create_connection(
                (host, port), timeout=_SOCKET_SECONDS
            ) as sock:
                if kind == "upload short":
                    sock.sendall(
                        request
                        + b"Content-Type: multipart/form-data; boundary=b\r\n"
                        b"Content-Length: 1000000\r\n\r\n--b\r\n"
                    )
                elif kind == "headers stopped":
                    sock.sendall(request)
                else:
                    sock.sendall(request + b"X-Slow: ")
                while not stop.is_set():
                    if kind == "headers a byte at a time":
                        sock.sendall(b"a")
                    try:
                        answer = sock.recv(4096)
                    except socket.timeout:
                        continue  # a second passed
                    ending = answer.split(b"\r\n", 1)[0].decode() or "closed"
                    break
        except (BrokenPipeError, ConnectionResetError):
            ending = "closed"
        except OSError as error:
            ending = f"{type(error).__name__}"
        with lock:
            endings[(kind, ending)] += 1
        if ending.startswith("OSError"):
            stop.wait(_SOCKET_SECONDS)


@dataclasses.dataclass
class Rounds:
    """What the rounds of one kind measured."""

    name: str
    seconds: list = dataclasses.field(default_factory=list)
    failures: list = dataclasses.field(default_factory=list)
    peaks: list = dataclasses.field(default_factory=list)
    p95s: list = dataclasses.field(default_factory=list)

    def row(self) -> dict:
        p50, p95, p99 = np.percentile(
            np.asarray(self.seconds) * 1000.0, [50, 95, 99]
        )
        return {
            "run": self.name,
            "good requests": len(self.seconds),
            "good failed": len(self.failures),
            "p50 ms": p50,
            "p95 ms": p95,
            "p99 ms": p99,
            "peak RSS MiB": max(self.peaks) / 2**20,
            "rounds (p95 ms)": self.p95s,
        }


def run_round(service, photos, uploads, rounds: Rounds, abuse: bool):
    """One round: the good clients' requests, with or without the abuse;
    returns the abuse's answers and endings."""
    sampler = MemorySampler(service.process.pid)
    stop, lock = threading.Event(), threading.Lock()
    answers, endings = collections.Counter(), collections.Counter()
    attackers = []
    if abuse:
        address = (harness.SERVICE_HOST, int(service.url.rsplit(":", 1)[1]))
        attackers = [
            threading.Thread(
                target=hostile_client,
                args=(service.url, uploads, stop, answers, lock),
            )
            for _ in range(_HOSTILE_CLIENTS.value)
        ] + [
            threading.Thread(
                target=slow_client,
                args=(address, _SLOW_KINDS[n % 3], stop, endings, lock),
            )
            for n in range(_SLOW_CLIENTS.value)
        ]
        for attacker in attackers:
            attacker.start()
        time.sleep(0.5)  # the attack is under way before the good requests
    try:
        seconds, failures = good_clients(
            service.url,
            photos,
            _GOOD_REQUESTS.value,
            _GOOD_CLIENTS.value,
            time.monotonic() + _MAX_SECONDS.value,
        )
    finally:
        stop.set()
        for attacker in attackers:
            attacker.join(60)
    rounds.peaks.append(sampler.stop())
    rounds.seconds += seconds
    rounds.failures += failures
    rounds.p95s.append(float(np.percentile(np.asarray(seconds) * 1e3, 95)))
    return answers, endings


def memory_bound_bytes() -> int:
    """What the service's limits let the attack add to its memory: the
    decodes in progress, the uploads held by searches, and the uploads
    being received (spooled in memory up to 1 MiB each)."""
    return (
        _DEFAULTS.max_concurrent_decodes * int(_MAX_DECODE_MB.value * 2**20)
        + _DEFAULTS.max_concurrent_searches * _DEFAULTS.max_upload_bytes
        + _DEFAULTS.max_concurrent_uploads * 2**20
    )


def main(argv):
    del argv
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line a request
    work = _WORK_DIR.value or harness.work_dir()
    os.makedirs(work, exist_ok=True)
    print(f"Preparing in {work} ...", flush=True)
    model_dir, index, photos = harness.service_inputs(
        work,
        _NUM_PRODUCTS.value,
        _PHOTO_SIZE.value,
        _IMAGE_SIZE.value,
        _EXPORT.value,
        _INDEX.value,
    )
    uploads = hostile_uploads(_HOSTILE_SIDE.value, _SCAN_REPEATS.value)
    for kind, upload in uploads.items():
        print(f"  {kind}: {len(upload.data):,} bytes", flush=True)
    service = harness.Service(
        model_dir,
        index,
        os.path.join(work, "serve_abuse.log"),
        header_timeout=_HEADER_TIMEOUT.value,
        body_timeout=_BODY_TIMEOUT.value,
        max_decode_mb=_MAX_DECODE_MB.value,
    )
    good = Rounds("good only")
    attacked = Rounds("good + abuse")
    answers, endings = collections.Counter(), collections.Counter()
    try:
        service.wait_until_ready()
        good_clients(  # warm-up: first calls, connections
            service.url, photos, 2 * _GOOD_CLIENTS.value, _GOOD_CLIENTS.value,
            time.monotonic() + _MAX_SECONDS.value,
        )  # fmt: skip
        ready_bytes = resident_bytes(service.process.pid)

        def abuse_round():
            round_answers, round_endings = run_round(
                service, photos, uploads, attacked, abuse=True
            )
            answers.update(round_answers)
            endings.update(round_endings)
            return attacked.p95s[-1]

        harness.side_by_side(
            {
                good.name: lambda: run_round(
                    service, photos, uploads, good, abuse=False
                )
                and good.p95s[-1],
                attacked.name: abuse_round,
            },
            _ROUNDS.value,
        )
        lifetime_peak = resident_bytes(service.process.pid, "VmHWM")
    finally:
        clean_stop = service.stop()
    return report(
        good, attacked, answers, endings, ready_bytes, lifetime_peak, clean_stop
    )


def report(good, attacked, answers, endings, ready, lifetime_peak, clean):
    rows = [good.row(), attacked.row()]
    harness.print_table(rows)
    bound = memory_bound_bytes()
    ratio = statistics.median(attacked.p95s) / statistics.median(good.p95s)
    print(
        f"\ngood-request p95 under abuse / without: {ratio:.2f} (medians of "
        f"the rounds); service resident memory: {ready / 2**20:.0f} MiB when "
        f"ready, peak {lifetime_peak / 2**20:.0f} MiB over the whole run; "
        f"the limits bound what an attack adds to {bound / 2**20:.0f} MiB."
    )
    print("\nthe abuse, answered:")
    for (kind, status), count in sorted(answers.items(), key=str):
        print(f"  {kind} -> {status}: {count}")
    for (kind, ending), count in sorted(endings.items(), key=str):
        print(f"  {kind} -> {ending}: {count}")
    problems = []
    failed = good.failures + attacked.failures
    if failed:
        problems.append(f"{len(failed)} good requests failed: {failed[:3]}")
    if lifetime_peak - ready > bound:
        problems.append(
            f"the service grew by {(lifetime_peak - ready) / 2**20:.0f} MiB, "
            f"over the {bound / 2**20:.0f} MiB its limits allow"
        )
    accepted = [
        (kind, count)
        for (kind, status), count in answers.items()
        if status == 200
    ]
    if accepted:
        problems.append(f"hostile requests answered 200: {accepted}")
    if not clean:
        problems.append("the service did not stop cleanly on Ctrl-C")
    harness.write_results(
        rows,
        p95_ratio_under_abuse=ratio,
        memory={
            "ready_mib": ready / 2**20,
            "lifetime_peak_mib": lifetime_peak / 2**20,
            "bound_on_growth_mib": bound / 2**20,
        },
        abuse_answers=[
            {"attack": kind, "answer": str(status), "count": count}
            for (kind, status), count in sorted(answers.items(), key=str)
        ],
        slow_client_endings=[
            {"attack": kind, "ending": ending, "count": count}
            for (kind, ending), count in sorted(endings.items(), key=str)
        ],
        problems=problems,
    )
    if problems:
        raise SystemExit("FAILED: " + "; ".join(problems))


if __name__ == "__main__":
    harness.run(main, smoke=SMOKE)
