"""The index a service searches, swapped for a newer version while it runs.

`--index` names either one index folder (it has a manifest.json) or a base
folder of numbered versions, the layout TF Serving watches for models:

```
<base>/1/   an index folder (python -m beau_tf.index --index_dir=<base>/1)
<base>/2/
```

With a base folder the service serves the highest version and `IndexVersions`
polls for a newer one. A newer version is loaded and checked in the polling
thread while the old one keeps serving, then swapped in by one reference
assignment, so a request sees either index whole and none fails during a
swap; the item images of the version served before stay known, so a page
showing its answers still gets their thumbnails. A version that fails to
load for any reason, or was built from another model, is logged and
refused, and the old one keeps serving; it is tried again only if its files
change. When the served version's folder is removed (or loses its
manifest), the newest version left that loads is served instead; if none
does, the one in memory keeps serving. Version folders are named by ASCII
digits only. `write_index` renames a finished folder into place, so a
numbered folder with a manifest is complete; a half-copied one fails its
checksums and is retried once the copy ends.
"""

from collections.abc import Callable
import dataclasses
import json
import os
import threading

from absl import logging

from beau_tf.retrieval import index_dir as index_dir_lib

# Raises (ValueError, say) unless the bundle may be served.
CheckFn = Callable[[index_dir_lib.IndexBundle], None]
LoadFn = Callable[[str], index_dir_lib.IndexBundle]


@dataclasses.dataclass(frozen=True)
class ServedIndex:
    """A loaded index and where it came from.

    Attributes:
      bundle: the loaded index folder.
      version: its number under the base folder; None for a lone folder.
    """

    bundle: index_dir_lib.IndexBundle
    version: int | None

    def summary(self) -> dict:
        """`{"version", "directory", "items"}`, as the service reports it:
        the directory is the folder's name only, never its path on this
        machine."""
        return {
            "version": self.version,
            "directory": os.path.basename(
                os.path.normpath(self.bundle.directory)
            ),
            "items": self.bundle.index.num_items,
        }


def is_index_folder(path: str) -> bool:
    return os.path.isfile(os.path.join(path, index_dir_lib.MANIFEST_FILE))


def list_versions(base: str) -> list[int]:
    """The numbered index folders under `base` that hold a manifest, sorted.

    Hidden staging folders (`.3.tmp-…`) and other names are ignored.
    """
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return []
    return sorted(
        int(name)
        for name in names
        if name.isascii()
        and name.isdigit()
        and is_index_folder(os.path.join(base, name))
    )


def check_index_path(path: str) -> None:
    """Raises unless `path` is an index folder or a base of versions.

    Raises:
      FileNotFoundError: `path` is missing, or holds neither.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"index {path} does not exist; build one with python -m "
            "beau_tf.index."
        )
    if not is_index_folder(path) and not list_versions(path):
        raise FileNotFoundError(
            f"{path} is neither an index folder (it has no "
            f"{index_dir_lib.MANIFEST_FILE}) nor a base folder of numbered "
            f"index versions ({path}/1, {path}/2, ...); build one with "
            f"python -m beau_tf.index --index_dir={os.path.join(path, '1')}."
        )


def newest_model_identity(path: str) -> dict:
    """The model identity named by the index `IndexVersions` serves first.

    Read from the manifest alone (no checksums): it says which model a
    remote server must serve; the loaded index is checked against it again.
    """
    check_index_path(path)
    folder = path
    if not is_index_folder(path):
        folder = os.path.join(path, str(list_versions(path)[-1]))
    manifest = os.path.join(folder, index_dir_lib.MANIFEST_FILE)
    try:
        with open(manifest) as stream:
            return dict(json.load(stream)["model_identity"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"{manifest} names no model_identity ({error}); rebuild the index "
            "with python -m beau_tf.index."
        ) from error


def _folder_state(folder: str) -> tuple:
    """What changes when a folder's files change: names, sizes, mtimes."""
    state = []
    for parent, _, names in os.walk(folder):
        for name in sorted(names):
            path = os.path.join(parent, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue
            state.append((path, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(state))


class IndexVersions:
    """Holds the served index and swaps in newer versions.

    Args:
      path: one index folder, or a base folder of numbered versions.
      check_fn: raises unless a loaded index fits the model (run on every
        version before it is served).
      load_fn: reads an index folder (`index_dir.load_index`; tests pass
        their own).
    """

    def __init__(
        self,
        path: str,
        check_fn: CheckFn,
        load_fn: LoadFn = index_dir_lib.load_index,
    ):
        check_index_path(path)
        self.path = path
        self.versioned = not is_index_folder(path)
        self._check_fn = check_fn
        self._load_fn = load_fn
        self._current: ServedIndex | None = None
        # item id -> image path of the version served before the current.
        self._previous_paths: dict[str, str] = {}
        self._reported_gone: int | None = None
        # version -> the folder's state when it was refused.
        self._refused: dict[int, tuple] = {}
        self._last_error = ""
        self._swap_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def current(self) -> ServedIndex | None:
        """The index to serve now; read it once per request."""
        return self._current

    def image_path(self, item_id: str) -> str | None:
        """The catalogue image of `item_id` in the served version, else in
        the version served before it (whose answers a page may still be
        showing); None for an id in neither."""
        current = self._current
        path = current.bundle.paths.get(item_id) if current else None
        return path if path is not None else self._previous_paths.get(item_id)

    def load_initial(self) -> ServedIndex:
        """Loads the index to serve first: the folder, or the newest version
        that loads and fits the model (broken newer ones are refused).

        Raises:
          ValueError or OSError: the lone folder, or every version, failed;
            the message of the newest failure says why.
        """
        if not self.versioned:
            bundle = self._load_fn(self.path)
            self._check_fn(bundle)
            self._current = ServedIndex(bundle, None)
        else:
            error = None
            for version in reversed(list_versions(self.path)):
                if self._try_version(version):
                    break
                error = error or self._last_error
            else:
                raise ValueError(
                    f"No index version under {self.path} can be served: "
                    f"{error}"
                )
        logging.info("Serving index %s", self._current.bundle.directory)
        return self._current

    def poll(self) -> bool:
        """Swaps in the newest version above the served one, if one fits.

        Returns:
          Whether a new version is now served.
        """
        if not self.versioned:
            return False
        with self._swap_lock:
            versions = list_versions(self.path)
            served = self._current.version if self._current else 0
            if served and served not in versions:
                return self._roll_back(served, versions)
            for version in reversed(versions):
                if version <= served:
                    return False
                if self._try_version(version):
                    return True
        return False

    def _roll_back(self, gone: int, versions: list[int]) -> bool:
        """Serves the newest of `versions` that loads, the served version
        `gone` having been removed."""
        for version in reversed(versions):
            if self._try_version(version):
                logging.warning(
                    "Index version %d was removed; rolled back to version %d.",
                    gone,
                    version,
                )
                return True
        if self._reported_gone != gone:
            self._reported_gone = gone
            logging.error(
                "Index version %d was removed and no other version under %s "
                "can be served; still serving it from memory.",
                gone,
                self.path,
            )
        return False

    def _try_version(self, version: int) -> bool:
        """Loads, checks and serves one version; logs and remembers a refusal."""
        folder = os.path.join(self.path, str(version))
        state = _folder_state(folder)
        if self._refused.get(version) == state:
            return False  # refused before and unchanged since
        try:
            bundle = self._load_fn(folder)
            self._check_fn(bundle)
        except Exception as error:  # pylint: disable=broad-exception-caught
            # Whatever a version's files hold, a bad one is refused, never
            # the end of the service (or of polling).
            self._refused[version] = state
            self._last_error = f"{folder}: {error}"
            logging.error(
                "Refused index version %d (%s); still serving %s.",
                version,
                error,
                self._current.bundle.directory if self._current else "none",
            )
            return False
        self._refused.pop(version, None)
        previous = self._current
        if previous is not None:
            self._previous_paths = previous.bundle.paths
        self._current = ServedIndex(bundle, version)  # the atomic swap
        if previous is not None:
            logging.info(
                "Swapped index version %s for version %d (%s).",
                previous.version,
                version,
                folder,
            )
        return True

    def start_polling(self, poll_seconds: float) -> None:
        """Polls every `poll_seconds` in a daemon thread (base folders only)."""
        if not self.versioned or self._poller is not None:
            return
        if not poll_seconds > 0:
            raise ValueError(
                f"index_poll_seconds={poll_seconds!r} must be positive."
            )

        def poll_forever():
            while not self._stop.wait(poll_seconds):
                try:
                    self.poll()
                except Exception:  # pylint: disable=broad-exception-caught
                    # A bug here must not end polling, nor the service.
                    logging.exception(
                        "Polling %s for indexes failed", self.path
                    )

        self._poller = threading.Thread(
            target=poll_forever, name="index-poller", daemon=True
        )
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
