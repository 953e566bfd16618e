"""Running beau_tf's command lines: bad input ends in one clear line."""

import sys
from collections.abc import Callable

from absl import app

# What a user's input or environment can cause (a missing file, a failed
# download, a bad value); anything else is a bug and keeps its traceback.
USER_ERRORS = (OSError, ValueError)


def run(main: Callable[[list[str]], None]) -> None:
    """`absl.app.run(main)`, with user errors reported without a traceback.

    The message (which names the file or value and what was expected) goes
    to stderr and the program exits with status 1; a usage error (a missing
    or contradictory flag) is one line too, with a pointer to --helpfull.
    """

    def guarded_main(argv):
        try:
            main(argv)
        except app.UsageError as error:
            # absl would print the whole --help first; the one line is what
            # the user needs.
            sys.exit(f"error: {error} (--helpfull lists every flag)")
        except USER_ERRORS as error:
            sys.exit(f"error: {error}")

    app.run(guarded_main)
