"""Running beau_tf's command lines: a quiet start, clear errors, a clean Ctrl-C.

A command's output should read as its own: bad input ends in one line, not
a traceback; Ctrl-C ends in one line and exit status 130; and on a machine
without an NVIDIA driver TensorFlow's failed CUDA probe (an ERROR line,
"failed call to cuInit") is dropped, as it says nothing about the command.
TensorFlow's INFO lines are hidden (`beau_tf/__init__.py` sets
TF_CPP_MIN_LOG_LEVEL=1 unless the user set it) and its warnings and errors
kept.
"""

import contextlib
import ctypes
import logging
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator

from absl import app
from absl import flags
from absl import logging as absl_logging

# What a user's input or environment can cause (a missing file, a failed
# download, a bad value); anything else is a bug and keeps its traceback.
USER_ERRORS = (OSError, ValueError)

# Outputs are written under a temporary name and renamed into place
# (`beau_tf.common.files`, the index and SavedModel writers), and the
# temporaries are removed on the way out.
INTERRUPTED = "interrupted (Ctrl-C); nothing half-written was kept"

# Exit status of a program ended by SIGINT, as shells report it.
INTERRUPTED_STATUS = 130

# What TensorFlow logs when it looks for GPUs on a machine without a driver.
NO_DRIVER_LINE = b"failed call to cuInit"


def run(main: Callable[[list[str]], None]) -> None:
    """`absl.app.run(main)`, with user errors and Ctrl-C as one line.

    A user error's message (which names the file or value and what was
    expected) goes to stderr and the program exits with status 1; a usage
    error (a missing or contradictory flag) is one line too, with a pointer
    to --helpfull. Ctrl-C prints `INTERRUPTED` and exits with status 130,
    whatever exception it caused on its way out of `main`.
    """
    hide_tensorflow_python_info()
    probe_gpus_quietly()
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _note_sigint)

    def guarded_main(argv):
        try:
            main(argv)
        except KeyboardInterrupt:
            pass
        except Exception as error:
            # Ctrl-C inside TensorFlow's C++ can surface as another error
            # (a SystemError, say); it is still the interruption.
            if not _SIGINT_RECEIVED.is_set():
                _exit_on_user_error(error)
                raise
        else:
            return
        # Out of the except block the traceback is gone, so generators it
        # held are closed and a progress bar has ended its line.
        sys.stderr.write(f"{INTERRUPTED}\n")
        sys.exit(INTERRUPTED_STATUS)

    app.run(guarded_main, flags_parser=parse_flags)


# absl's help flags, which print the usage and exit.
_HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?")
_REQUIRED = re.compile(r"flag --(\w+)=None: Flag --\w+ must have a value")


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a mistake as one `error:` line (exit 1) and
    a help flag a success (exit 0) rather than absl's "FATAL Flags parsing
    error" and exit 1 for both."""
    asked_for_help = any(
        arg.startswith("-") and arg.lstrip("-").split("=")[0] in _HELP_FLAGS
        for arg in argv[1:]
    )
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        required = _REQUIRED.search(str(error))
        message = f"--{required.group(1)} is required" if required else error
        sys.exit(f"error: {message} (--helpfull lists every flag)")
    except SystemExit as exiting:
        if asked_for_help and exiting.code == 1:
            sys.exit(0)
        raise


_SIGINT_RECEIVED = threading.Event()


def _note_sigint(signum, frame) -> None:
    _SIGINT_RECEIVED.set()
    signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt


def _exit_on_user_error(error: Exception) -> None:
    if isinstance(error, app.UsageError):
        # absl would print the whole --help first; the one line is what the
        # user needs.
        sys.exit(f"error: {error} (--helpfull lists every flag)")
    if isinstance(error, USER_ERRORS):
        sys.exit(f"error: {error}")


def hide_tensorflow_python_info() -> None:
    """Hides TensorFlow's Python INFO lines when its C++ ones are hidden.

    TF_CPP_MIN_LOG_LEVEL (1 by default, see `beau_tf/__init__.py`) only
    reaches C++; TensorFlow's Python code logs "Assets written to",
    "Sharding callback duration" and the like through its own logger and
    absl's. Its warnings and errors still show; TF_CPP_MIN_LOG_LEVEL=0 shows
    everything.
    """
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is None or _tf_cpp_min_log_level() < 1:
        return
    folder = os.path.dirname(tensorflow.__file__) + os.sep
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    absl_logging.get_absl_handler().addFilter(
        lambda record: record.levelno > logging.INFO
        or not record.pathname.startswith(folder)
    )


def _tf_cpp_min_log_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def has_nvidia_driver() -> bool:
    """Whether CUDA could work here: a driver device node or libcuda."""
    if os.path.exists("/dev/nvidiactl"):
        return True
    try:
        ctypes.CDLL("libcuda.so.1")  # WSL has libcuda but no /dev/nvidiactl
    except OSError:
        return False
    return True


def probe_gpus_quietly() -> None:
    """Lets TensorFlow look for GPUs now, dropping its no-driver ERROR line.

    TensorFlow probes CUDA once, when devices are first needed, and on a
    machine without an NVIDIA driver logs "failed call to cuInit" at ERROR
    level; no setting stops the probe (CUDA_VISIBLE_DEVICES does not). So
    the probe is run here, with that one line dropped from stderr and all
    else kept. Where a driver exists a failed probe is a real problem and is
    left alone; TF_CPP_MIN_LOG_LEVEL=0 keeps the line too, and a command
    that has not imported TensorFlow skips this.
    """
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is None or _tf_cpp_min_log_level() < 1 or has_nvidia_driver():
        return
    with stderr_without(NO_DRIVER_LINE):
        tensorflow.config.list_physical_devices("GPU")


@contextlib.contextmanager
def stderr_without(text: bytes) -> Iterator[None]:
    """Drops the lines containing `text` from what the block writes to stderr.

    Works at the file-descriptor level, so it also catches C++ logging. The
    other lines are written to stderr when the block ends, in order.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                captured.seek(0)
                kept = b"".join(line for line in captured if text not in line)
                while kept:
                    kept = kept[os.write(2, kept) :]
    finally:
        os.close(saved)


@contextlib.contextmanager
def stderr_lines_without(*texts: bytes) -> Iterator[None]:
    """Drops the lines containing any of `texts` from what the block writes
    to stderr, passing the others on as they come (for a long-running
    block, unlike `stderr_without`).

    Works at the file-descriptor level, so it also catches what C++
    libraries print (libjpeg's warnings, TensorFlow's log).
    """
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def copy_kept_lines() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if any(text in line for text in texts):
                    continue
                while line:
                    line = line[os.write(saved, line) :]

    copier = threading.Thread(target=copy_kept_lines, daemon=True)
    copier.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer closes: the copier ends
        copier.join(10)
        os.close(saved)
