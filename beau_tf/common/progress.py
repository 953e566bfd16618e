"""Progress of long work: a tqdm bar on a terminal, log lines otherwise.

Both show the count, the rate and the time left (ETA), rendered by tqdm:

  Embedding: 4096/10000 images (41%) in 01:02, 66.1images/s, ETA 01:29

On a terminal the bar is redrawn on stderr; under a pipe or CI, where a
redrawn bar would be noise, the same line is logged at most every
`log_every_seconds` and once at the end. The first update often includes
setup (building a training graph takes longer than a hundred steps), so the
logged rate and ETA count the work done after it.
"""

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from absl import logging
import tqdm
from tqdm import contrib as tqdm_contrib

T = TypeVar("T")

# tqdm's fields; unit_scale=True makes rates read 66.1 or 1.2k, and the
# per-second rate is kept even when slow (0.40steps/s, not 2.50s/steps).
_LOG_FORMAT = (
    "{{desc}}: {{n}}/{{total}} {{unit}} ({{percentage:.0f}}%) in {elapsed}, "
    "{{rate_noinv_fmt}}, ETA {{remaining}}{{postfix}}"
)
_BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n}/{total} "
    "[{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"
)


def _on_terminal() -> bool:
    return sys.stderr.isatty()


class Progress:
    """Counts work done towards `total` and shows it with rate and ETA.

    Use as a context manager, calling `update` as work is done:

      with progress.Progress(num_steps, "Training", unit="steps") as bar:
          for ...:
              bar.update(1, postfix=f"loss={loss:.4g}")
    """

    def __init__(
        self,
        total: int,
        description: str,
        unit: str = "images",
        initial: int = 0,
        log_every_seconds: float = 30.0,
    ):
        """Starts counting (and the clock).

        Args:
          total: units of work in all.
          description: what is being done, e.g. "Embedding catalogue".
          unit: what is counted, plural ("images", "steps").
          initial: units already done before (a resumed run); the rate and
            ETA count only the work done from here.
          log_every_seconds: spacing of log lines when not on a terminal.
        """
        self.total = total
        self.description = description
        self.unit = unit
        self.initial = initial
        self.log_every_seconds = log_every_seconds
        self.done = initial
        self._postfix = ""
        self._closed = False
        self._start = self._last_log = time.monotonic()
        # When the first update came, and what was done by then: the rate
        # counts from there.
        self._first_update: tuple[float, int] | None = None
        self._bar = None
        self._log_handler = self._log_stream = None
        if _on_terminal():
            self._bar = tqdm.tqdm(
                total=total,
                initial=initial,
                desc=description,
                unit=unit,
                unit_scale=True,
                bar_format=_BAR_FORMAT,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            # absl's log lines are written above the bar, not into it.
            handler = logging.get_absl_handler().python_handler
            if handler.stream is sys.stderr:
                self._log_handler = handler
                self._log_stream = handler.setStream(
                    tqdm_contrib.DummyTqdmFile(sys.stderr)
                )

    def update(self, count: int = 1, postfix: str = "") -> None:
        """Adds `count` units done; `postfix` ("loss=0.12") is shown after."""
        self.done += count
        self._postfix = postfix
        if self._first_update is None:
            self._first_update = (time.monotonic() - self._start, self.done)
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(count)
            return
        now = time.monotonic()
        if now - self._last_log >= self.log_every_seconds:
            self._last_log = now
            logging.info("%s", self.line(now - self._start))

    def line(self, elapsed: float) -> str:
        """The progress as one line of text, after `elapsed` seconds; the
        rate and ETA count the work done after the first update."""
        since, initial = 0.0, self.initial
        if self._first_update is not None and self.done > self._first_update[1]:
            since, initial = self._first_update
        return tqdm.tqdm.format_meter(
            self.done,
            max(self.total, self.done),  # tqdm drops a total overshot
            elapsed - since,
            prefix=self.description,
            unit=self.unit,
            unit_scale=True,
            bar_format=_LOG_FORMAT.format(
                elapsed=tqdm.tqdm.format_interval(elapsed)
            ),
            postfix=self._postfix,
            initial=initial,
        )

    def close(self) -> None:
        """Ends the bar, or logs the last line; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            if self._log_handler is not None and isinstance(
                self._log_handler.stream, tqdm_contrib.DummyTqdmFile
            ):
                self._log_handler.setStream(self._log_stream)
        else:
            logging.info("%s", self.line(time.monotonic() - self._start))

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def track(
    items: Iterable[T],
    total: int,
    description: str,
    unit: str = "images",
    size: Callable[[T], int] | None = None,
    log_every_seconds: float = 30.0,
) -> Iterator[T]:
    """Yields `items`, showing progress towards `total` units.

    An item counts once the loop has handled it: when the next one is
    asked for, or the loop ends. A loop over batches passes the number of
    images as `total` and `size=len`:

      for batch in progress.track(batches, len(paths), "Embedding", size=len):

    Args:
      items: what to iterate over.
      total: units in all (items, or images when items are batches).
      description: what is being done, e.g. "Preparing catalogue".
      unit: what is counted, plural.
      size: how many units an item counts for; 1 each when None.
      log_every_seconds: spacing of log lines when not on a terminal.

    Yields:
      The items, unchanged.
    """
    with Progress(
        total, description, unit, log_every_seconds=log_every_seconds
    ) as progress:
        for item in items:
            try:
                yield item
            finally:  # also when the loop stops early, e.g. inside zip()
                progress.update(1 if size is None else size(item))
