"""Writing files and folders so that a reader sees the old or the new,
never half: `atomic_path` for one file, `write_json_atomically` for JSON,
`staged_folder` for a folder written whole (an export version, an index, a
synthetic catalogue)."""

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tempfile
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


@contextlib.contextmanager
def staged_folder(path: str, replace: bool = False) -> Iterator[str]:
    """Yields a hidden folder beside `path`, renamed to `path` on success.

    Readers (TF Serving, search) never see a half-written folder: whatever
    the block writes appears at `path` all at once. On an exception, or when
    `path` was taken meanwhile, the staging folder is removed and `path` is
    left as it was. An empty folder at `path` is replaced; a non-empty one
    only when the caller says so.

    Args:
      path: the folder to create; missing, or an empty folder.
      replace: replace a non-empty folder at `path` (moved aside, swapped,
        then removed); for outputs the caller has checked are its own.

    Yields:
      The staging folder to write into (it exists, empty).

    Raises:
      FileExistsError: `path` is a file or a non-empty folder, when the
        block starts or when it ends.
    """
    if not replace:
        _check_free_folder(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(
        prefix=f".{os.path.basename(os.path.normpath(path))}.tmp-", dir=parent
    )
    try:
        yield staging
        if replace and os.path.isdir(path) and os.listdir(path):
            _swap(staging, path)
            return
        _check_free_folder(path)
        if os.path.isdir(path):
            os.rmdir(path)  # empty, checked above
        try:
            os.rename(staging, path)
        except OSError as error:  # a non-empty folder took the name meanwhile
            raise FileExistsError(
                f"{path} appeared while it was written; it is never "
                "overwritten."
            ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: str, path: str) -> None:
    """Renames `staging` onto the non-empty folder `path`, removing the old."""
    old = staging + ".old"
    os.rename(path, old)
    try:
        os.rename(staging, path)
    except OSError:
        os.rename(old, path)  # put the old one back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _check_free_folder(path: str) -> None:
    if os.path.isdir(path) and not os.listdir(path):
        return
    if os.path.exists(path):
        kind = "a non-empty folder" if os.path.isdir(path) else "a file"
        raise FileExistsError(
            f"{path} exists and is {kind}; it is never overwritten: choose "
            "a new or empty folder."
        )


def file_sha256(path: str) -> str:
    """The hex sha256 of a file's bytes, read in blocks."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


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
