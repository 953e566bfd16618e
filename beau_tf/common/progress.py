"""Progress reporting for long loops: a bar on a terminal, log lines otherwise."""

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from absl import logging
import keras

T = TypeVar("T")


def track(
    items: Iterable[T],
    total: int,
    description: str,
    log_every_seconds: float = 30.0,
) -> Iterator[T]:
    """Yields `items`, showing progress towards `total`.

    On a terminal a Keras progress bar is drawn (on stdout, as Keras draws it); under a pipe or CI,
    where a redrawn bar would be noise, a log line is written at most every
    `log_every_seconds` and at the end.

    Args:
      items: what to iterate over.
      total: how many items there are.
      description: what is being done, e.g. "Preparing catalogue".
      log_every_seconds: spacing of log lines when not on a terminal.

    Yields:
      The items, unchanged.
    """
    interactive = sys.stdout.isatty() and total > 1
    if interactive:
        logging.info("%s: %d items", description, total)
        bar = keras.utils.Progbar(total, unit_name="item")
    last_log = start = time.monotonic()
    done = 0
    for done, item in enumerate(items, start=1):
        yield item
        if interactive:
            bar.update(done)
        elif time.monotonic() - last_log >= log_every_seconds:
            last_log = time.monotonic()
            logging.info("%s: %d/%d", description, done, total)
    if not interactive:
        logging.info(
            "%s: %d/%d done in %.1f s",
            description,
            done,
            total,
            time.monotonic() - start,
        )
