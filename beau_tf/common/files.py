"""Writing files so that a reader sees the old file or the new, never half."""

import contextlib
import json
import os
import secrets
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path beside `path`, renamed onto it on success.

    Whatever the block writes to the temporary path appears at `path` all at
    once (`os.replace` on the same file system); on an exception it is removed
    and `path` is left as it was. The folder is created when missing.

    Args:
      path: the final file.
      suffix: ending the temporary name must have (Keras insists on ".keras"
        and ".weights.h5").

    Yields:
      The temporary path to write.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(
        folder,
        f".{os.path.basename(path)}.{os.getpid()}."
        f"{secrets.token_hex(4)}.tmp{suffix}",
    )
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def write_json_atomically(path: str, value) -> None:
    """Writes JSON so that readers see the old file or the new, never half."""
    with atomic_path(path) as temporary:
        with open(temporary, "w") as stream:
            json.dump(value, stream, indent=2, sort_keys=True)


def check_writable(path: str, flag: str, folder: bool = False) -> None:
    """Raises unless this process can create `path` (a file, or a folder).

    CLIs call it on their outputs before any long work, so a typo in an
    output path costs nothing.

    Args:
      path: where an output will be written.
      flag: how the user named it, e.g. "--visualize", for the message.
      folder: whether the output is a folder (else a file).

    Raises:
      IsADirectoryError: a file output names an existing folder.
      NotADirectoryError: a folder output, or a parent of `path`, is a file.
      PermissionError: the nearest existing folder above `path` is not
        writable.
    """
    if not folder and os.path.isdir(path):
        raise IsADirectoryError(
            f"{flag}={path} is a folder; a file name is expected."
        )
    if folder and os.path.isfile(path):
        raise NotADirectoryError(
            f"{flag}={path} is a file; a folder is expected."
        )
    existing = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(
            f"cannot write {flag}={path}: {existing} is a file, not a folder."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"cannot write {flag}={path}: no permission to write in "
            f"{existing}."
        )
