"""Writing files so that a reader sees the old file or the new, never half."""

import contextlib
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
