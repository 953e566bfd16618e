"""Micro-batching: concurrent requests share one model call.

A model embeds 16 images in one call for much less than 16 times the cost
of one, so a service under load should not call it once per request.
`MicroBatcher` queues items from any number of threads; one worker thread
takes the first waiting item, waits at most `batch_timeout_ms` for more (up
to `max_batch`), calls the batch function once and hands each caller its own
result. Blocking calls (TensorFlow, gRPC) therefore run on the worker, one
batch at a time, never on the caller's event loop.

`max_batch=1` turns batching off (one call per item, still on the worker),
so a load test can measure what batching gains.
"""

from collections.abc import Callable, Sequence
import concurrent.futures
import queue
import threading
import time
from typing import Generic, TypeVar

from absl import logging

Item = TypeVar("Item")
Result = TypeVar("Result")

# Sent through the queue to stop the worker.
_STOP = object()


class BatcherClosedError(RuntimeError):
    """An item was submitted after `close`."""


class MicroBatcher(Generic[Item, Result]):
    """Collects items from many threads into batches for one function.

    Args:
      batch_fn: takes a list of items, returns one result per item, in order.
        An exception fails every item of that batch (each caller gets it);
        one bad item should be a result that says so, not an exception.
      max_batch: the most items per call; 1 disables batching.
      batch_timeout_ms: how long the worker waits, after the first item of a
        batch arrives, for more items before calling `batch_fn` anyway.
      name: names the worker thread in logs.
    """

    def __init__(
        self,
        batch_fn: Callable[[list[Item]], Sequence[Result]],
        max_batch: int = 16,
        batch_timeout_ms: float = 5.0,
        name: str = "batcher",
    ):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int):
            raise ValueError(f"max_batch={max_batch!r} must be an int >= 1.")
        if max_batch < 1:
            raise ValueError(f"max_batch={max_batch} must be >= 1.")
        if not batch_timeout_ms >= 0:
            raise ValueError(
                f"batch_timeout_ms={batch_timeout_ms!r} must be >= 0."
            )
        self.batch_fn = batch_fn
        self.max_batch = max_batch
        self.batch_timeout_ms = batch_timeout_ms
        self.name = name
        # Counters for tests and benchmarks: calls of batch_fn, items seen.
        self.num_batches = 0
        self.num_items = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._worker = threading.Thread(
            target=self._work, name=f"{name}-worker", daemon=True
        )
        self._worker.start()

    def submit(self, item: Item) -> concurrent.futures.Future:
        """Queues `item`; the future holds its result (or the batch's error).

        Raises:
          BatcherClosedError: the batcher was closed.
        """
        future = concurrent.futures.Future()
        with self._close_lock:
            if self._closed:
                raise BatcherClosedError(f"{self.name} is closed.")
            self._queue.put((item, future))
        return future

    def __call__(self, item: Item) -> Result:
        """`submit(item)`, waiting for the result (or raising its error)."""
        return self.submit(item).result()

    def close(self, timeout_seconds: float | None = 10.0) -> None:
        """Finishes the items already queued, then stops the worker."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put((_STOP, None))
        self._worker.join(timeout_seconds)

    def _next_batch(self) -> tuple[list, bool]:
        """Blocks for one item, then gathers more until full or timed out.

        Returns:
          `(batch of (item, future), stop)`: stop once the close marker came.
        """
        first = self._queue.get()
        if first[0] is _STOP:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self.batch_timeout_ms / 1000.0
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0:
                    entry = self._queue.get(timeout=remaining)
                else:
                    entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if entry[0] is _STOP:
                return batch, True
            batch.append(entry)
        return batch, False

    def _work(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._next_batch()
            if batch:
                self._run(batch)

    def _run(self, batch: list) -> None:
        items = [item for item, _ in batch]
        futures = [future for _, future in batch]
        self.num_batches += 1
        self.num_items += len(items)
        try:
            results = list(self.batch_fn(items))
            if len(results) != len(items):
                raise RuntimeError(
                    f"{self.name}: the batch function returned "
                    f"{len(results)} results for {len(items)} items."
                )
        except Exception as error:  # pylint: disable=broad-exception-caught
            # Every waiting caller gets the error; none is left hanging, and
            # the worker lives on for the next batch.
            logging.warning(
                "%s: a batch of %d failed: %s", self.name, len(items), error
            )
            for future in futures:
                future.set_exception(error)
            return
        for future, result in zip(futures, results):
            future.set_result(result)
