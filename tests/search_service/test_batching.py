"""Tests for beau_tf.search_service.batching: concurrent calls share one batch."""

import concurrent.futures
import threading
import time

from absl.testing import absltest

from beau_tf.search_service import batching


class RecordingDouble:
    """Doubles each item; records batch sizes; can block or fail."""

    def __init__(self):
        self.batches = []
        self.release = threading.Event()
        self.release.set()
        self.error = None

    def __call__(self, items):
        self.release.wait(5)
        self.batches.append(list(items))
        if self.error is not None:
            raise self.error
        return [item * 2 for item in items]


def submit_concurrently(batcher, items):
    """Every item submitted from its own thread at once; their results."""
    start = threading.Barrier(len(items))

    def call(item):
        start.wait()
        return batcher(item)

    with concurrent.futures.ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(call, items))


class MicroBatcherTest(absltest.TestCase):

    def make(self, batch_fn, **kwargs):
        batcher = batching.MicroBatcher(batch_fn, **kwargs)
        self.addCleanup(batcher.close)
        return batcher

    def test_concurrent_calls_share_one_call_and_get_their_own_rows(self):
        double = RecordingDouble()
        batcher = self.make(double, max_batch=8, batch_timeout_ms=500)
        results = submit_concurrently(batcher, list(range(8)))
        self.assertEqual(results, [2 * item for item in range(8)])
        self.assertLen(double.batches, 1)  # full at 8, long before 500 ms
        self.assertCountEqual(double.batches[0], range(8))
        self.assertEqual((batcher.num_batches, batcher.num_items), (1, 8))

    def test_a_batch_never_exceeds_max_batch(self):
        double = RecordingDouble()
        double.release.clear()  # the first call holds the worker
        batcher = self.make(double, max_batch=3, batch_timeout_ms=50)
        first = batcher.submit(100)
        time.sleep(0.1)  # the worker is now inside the first call
        futures = [batcher.submit(item) for item in range(7)]
        double.release.set()
        self.assertEqual(first.result(5), 200)
        self.assertEqual([f.result(5) for f in futures], list(range(0, 14, 2)))
        self.assertEqual([len(batch) for batch in double.batches], [1, 3, 3, 1])

    def test_max_batch_one_calls_once_per_item(self):
        double = RecordingDouble()
        batcher = self.make(double, max_batch=1, batch_timeout_ms=500)
        started = time.monotonic()
        results = submit_concurrently(batcher, list(range(6)))
        self.assertEqual(results, [2 * item for item in range(6)])
        self.assertEqual([len(batch) for batch in double.batches], [1] * 6)
        # A full batch of one never waits for the timeout.
        self.assertLess(time.monotonic() - started, 0.5)

    def test_a_lone_call_waits_no_longer_than_the_timeout(self):
        batcher = self.make(RecordingDouble(), batch_timeout_ms=20)
        started = time.monotonic()
        self.assertEqual(batcher(21), 42)
        self.assertLess(time.monotonic() - started, 1.0)

    def test_a_failing_batch_fails_every_waiting_call_and_the_next_works(self):
        double = RecordingDouble()
        double.error = RuntimeError("model exploded")
        batcher = self.make(double, max_batch=4, batch_timeout_ms=200)
        futures = [batcher.submit(item) for item in range(4)]
        for future in futures:
            with self.assertRaisesRegex(RuntimeError, "model exploded"):
                future.result(5)  # raises instead of hanging
        double.error = None
        self.assertEqual(batcher(5), 10)

    def test_a_wrong_number_of_results_is_an_error_not_a_hang(self):
        batcher = self.make(
            lambda items: [1], max_batch=2, batch_timeout_ms=200
        )
        futures = [batcher.submit(item) for item in range(2)]
        for future in futures:
            with self.assertRaisesRegex(RuntimeError, "1 results for 2 items"):
                future.result(5)

    def test_close_finishes_queued_items_then_refuses_new_ones(self):
        double = RecordingDouble()
        double.release.clear()
        batcher = batching.MicroBatcher(double, max_batch=2)
        futures = [batcher.submit(item) for item in range(5)]
        double.release.set()
        batcher.close()
        self.assertEqual([f.result(0) for f in futures], [0, 2, 4, 6, 8])
        with self.assertRaises(batching.BatcherClosedError):
            batcher.submit(1)

    def test_bad_settings_are_named(self):
        with self.assertRaisesRegex(ValueError, "max_batch=0"):
            batching.MicroBatcher(RecordingDouble(), max_batch=0)
        with self.assertRaisesRegex(ValueError, "batch_timeout_ms=-1"):
            batching.MicroBatcher(RecordingDouble(), batch_timeout_ms=-1)


if __name__ == "__main__":
    absltest.main()
