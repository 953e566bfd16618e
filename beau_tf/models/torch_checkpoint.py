"""Reads PyTorch `.pth` checkpoints into NumPy arrays without importing torch.

Pretrained backbones are often published only as PyTorch state dicts. This module
decodes the two formats `torch.save` has written so far, so their weights can be
ported to Keras on a machine without torch:

* the zip format (torch >= 1.6): `<prefix>/data.pkl` holds the pickled object,
  whose tensors point at raw storages stored as `<prefix>/data/<key>`;
* the legacy format (torch < 1.6): five pickles back to back (magic number,
  protocol version, system info, the object, the storage keys) followed by each
  storage as an int64 element count and the raw bytes.

The pickles are read with a restricted `pickle.Unpickler` that only knows the few
globals a state dict needs (`collections.OrderedDict`, `torch._utils._rebuild_*`,
`torch.<Type>Storage`); any other global is refused, so loading a checkpoint can
never run code from it.

Example:

    state = load_torch_state_dict("efficientnet-lite0-57934424.pth")
    state["_conv_stem.weight"].shape  # (32, 3, 3, 3), OIHW as torch stores it.
"""

import collections
import dataclasses
import io
import os
import pickle
import struct
import tarfile
import zipfile
from typing import Any

import numpy as np

# `torch.save` writes this number as the first pickle of a legacy checkpoint.
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

# bfloat16 has no NumPy dtype: it is read as uint16 and widened to float32.
_BFLOAT16 = "bfloat16"

# torch storage class name -> element dtype (little-endian; swapped for big-endian).
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": _BFLOAT16,
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}

# Functions torch pickles to rebuild a tensor or an nn.Parameter.
_REBUILD_FUNCTIONS = (
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_parameter",
)


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stands in for a `torch.<Type>Storage` class while unpickling."""

    name: str

    @property
    def itemsize(self) -> int:
        dtype = _STORAGE_DTYPES[self.name]
        return 2 if dtype is _BFLOAT16 else dtype.itemsize


@dataclasses.dataclass(frozen=True)
class _StorageRef:
    """A storage named by a persistent id; its bytes are read after unpickling."""

    storage_type: _StorageType
    key: str
    numel: int
    # Legacy storages may be views (offset, numel) into a root storage.
    view_offset: int = 0


@dataclasses.dataclass(frozen=True)
class _LazyTensor:
    """A tensor's metadata, turned into an array once its storage is loaded."""

    storage: _StorageRef
    storage_offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *unused_args):
    """Replaces `torch._utils._rebuild_tensor(_v2)`: records where the data lives."""
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError(
            f"a tensor refers to {type(storage).__name__!r} instead of a storage "
            "persistent id; the checkpoint is not a plain PyTorch state dict"
        )
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused_args):
    """Replaces `torch._utils._rebuild_parameter`: a parameter is just its data."""
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only what a tensor state dict contains; refuses any other global."""

    def __init__(self, file, *, source: str):
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in (
            "_rebuild_tensor",
            "_rebuild_tensor_v2",
        ):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"{self._source} asks to load the global {module}.{name}, which a tensor "
            "state dict does not need; refusing it so the checkpoint cannot run code "
            "(only collections.OrderedDict, torch._utils._rebuild_tensor(_v2)/"
            "_rebuild_parameter and torch.<Type>Storage are allowed)"
        )

    def persistent_load(self, pid: Any) -> _StorageRef:
        # Zip: ('storage', type, key, location, numel).
        # Legacy: ('storage', type, root_key, location, numel, view_metadata).
        if not (
            isinstance(pid, tuple)
            and len(pid) in (5, 6)
            and pid[0] == "storage"
        ):
            raise pickle.UnpicklingError(
                f"{self._source} has an unknown persistent id {pid!r}; only "
                "('storage', ...) ids written by torch.save are understood"
            )
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(
                f"{self._source} names the storage type {storage_type!r}; expected "
                f"one of torch.{{{', '.join(sorted(_STORAGE_DTYPES))}}}"
            )
        view_metadata = pid[5] if len(pid) == 6 else None
        if view_metadata is not None:
            # A view: (view_key, offset, view_numel) into the root storage `key`.
            _, offset, view_numel = view_metadata
            return _StorageRef(storage_type, key, int(view_numel), int(offset))
        return _StorageRef(storage_type, key, numel)


def _restricted_load(file, source: str) -> Any:
    return _RestrictedUnpickler(file, source=source).load()


def _storage_dtype(storage_type: _StorageType, byteorder: str):
    dtype = _STORAGE_DTYPES[storage_type.name]
    if dtype is _BFLOAT16:
        dtype = np.dtype("u2")
    return dtype.newbyteorder("<" if byteorder == "little" else ">")


def _to_native(flat: np.ndarray, storage_type: _StorageType) -> np.ndarray:
    flat = flat.astype(flat.dtype.newbyteorder("="), copy=False)
    if _STORAGE_DTYPES[storage_type.name] is _BFLOAT16:
        # bfloat16 is the upper half of a float32.
        flat = (flat.astype(np.uint32) << 16).view(np.float32)
    return flat


def _materialize(obj: Any, storages: dict[str, np.ndarray], source: str) -> Any:
    """Replaces every `_LazyTensor` in `obj` (dicts, lists, tuples) by an array."""
    if isinstance(obj, _LazyTensor):
        ref = obj.storage
        if ref.key not in storages:
            raise ValueError(
                f"{source} is truncated or corrupt: storage {ref.key!r} is referenced "
                "but its data is missing; re-download or re-save the checkpoint"
            )
        flat = storages[ref.key][ref.view_offset : ref.view_offset + ref.numel]
        return _strided_copy(flat, obj, source)
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for key, value in obj.items():
            out[key] = _materialize(value, storages, source)
        return out
    if isinstance(obj, list):
        return [_materialize(v, storages, source) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v, storages, source) for v in obj)
    return obj


def _strided_copy(
    flat: np.ndarray, tensor: _LazyTensor, source: str
) -> np.ndarray:
    """Copies the (size, stride, offset) view of a flat storage into a new array."""
    size, stride, offset = tensor.size, tensor.stride, tensor.storage_offset
    if len(size) != len(stride):
        raise ValueError(
            f"{source} is corrupt: tensor size {size} and stride {stride} differ in "
            "rank"
        )
    if any(s == 0 for s in size):
        return np.zeros(size, dtype=flat.dtype)
    if any(s < 0 for s in stride):
        raise ValueError(
            f"{source} is corrupt: negative tensor stride {stride}"
        )
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or last >= flat.size:
        raise ValueError(
            f"{source} is corrupt: a tensor of size {size}, stride {stride} at offset "
            f"{offset} reaches element {last} of a storage with {flat.size} elements"
        )
    view = np.lib.stride_tricks.as_strided(
        flat[offset:],
        shape=size,
        strides=[s * flat.itemsize for s in stride],
        writeable=False,
    )
    return view.copy(order="C")


def _load_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [
            n for n in names if n.endswith("/data.pkl") and n.count("/") == 1
        ]
        if len(pickles) != 1:
            raise ValueError(
                f"{path} is a zip file but not a torch.save checkpoint (expected one "
                f"'<prefix>/data.pkl', found {pickles or 'none'})"
            )
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = (
                archive.read(prefix + "byteorder").decode("ascii").strip()
            )
        obj = _restricted_load(io.BytesIO(archive.read(pickles[0])), path)

        refs = _collect_storage_refs(obj)
        storages = {}
        for key, ref in refs.items():
            record = f"{prefix}data/{key}"
            if record not in names:
                raise ValueError(
                    f"{path} is truncated or corrupt: storage record {record!r} is "
                    "missing; re-download or re-save the checkpoint"
                )
            raw = archive.read(record)
            dtype = _storage_dtype(ref.storage_type, byteorder)
            flat = np.frombuffer(
                raw, dtype=dtype, count=len(raw) // dtype.itemsize
            )
            storages[key] = _to_native(flat, ref.storage_type)
    return _materialize(obj, storages, path)


def _collect_storage_refs(obj: Any) -> dict[str, _StorageRef]:
    refs = {}
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, _LazyTensor):
            refs.setdefault(item.storage.key, item.storage)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return refs


def _load_legacy(path: str) -> Any:
    with open(path, "rb") as f:
        magic = _restricted_load(f, path)
        if magic != _LEGACY_MAGIC_NUMBER:
            raise ValueError(
                f"{path} is a pickle but not a torch.save checkpoint (magic number "
                f"{magic!r}); save it with torch.save(model.state_dict(), path)"
            )
        protocol = _restricted_load(f, path)
        if protocol != _LEGACY_PROTOCOL_VERSION:
            raise ValueError(
                f"{path} uses legacy torch protocol {protocol!r}; only "
                f"{_LEGACY_PROTOCOL_VERSION} is supported. Re-save it with a recent "
                "torch: torch.save(torch.load(path), new_path)"
            )
        sys_info = _restricted_load(f, path)
        byteorder = "little" if sys_info.get("little_endian", True) else "big"
        obj = _restricted_load(f, path)
        keys = _restricted_load(f, path)

        refs = _collect_storage_refs(obj)
        roots = {}
        for ref in refs.values():
            roots.setdefault(ref.key, ref.storage_type)
        storages = {}
        endian = "<" if byteorder == "little" else ">"
        for key in keys:
            header = f.read(8)
            if len(header) != 8:
                raise ValueError(
                    f"{path} is truncated: storage {key!r} has no data; re-download "
                    "or re-save the checkpoint"
                )
            (numel,) = struct.unpack(endian + "q", header)
            storage_type = roots.get(key)
            if storage_type is None:
                # A storage no tensor refers to: skip its bytes. Its element size is
                # unknown, so it cannot be skipped safely.
                raise ValueError(
                    f"{path} holds storage {key!r} that no tensor uses; this legacy "
                    "layout is not supported. Re-save it with a recent torch: "
                    "torch.save(torch.load(path), new_path)"
                )
            dtype = _storage_dtype(storage_type, byteorder)
            raw = f.read(numel * dtype.itemsize)
            if len(raw) != numel * dtype.itemsize:
                raise ValueError(
                    f"{path} is truncated inside storage {key!r}; re-download or "
                    "re-save the checkpoint"
                )
            storages[key] = _to_native(
                np.frombuffer(raw, dtype=dtype), storage_type
            )
    return _materialize(obj, storages, path)


def _is_legacy_pickle(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(2)
    # Protocol 2+ pickles start with PROTO (0x80) and the protocol number.
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def load_torch_checkpoint(path: str | os.PathLike) -> Any:
    """Loads a `torch.save` file, with tensors as NumPy arrays.

    Args:
        path: A `.pth`/`.pt` file written by `torch.save` (zip or legacy format).

    Returns:
        The saved object (usually an `OrderedDict` of name -> tensor) where every
        tensor is a C-contiguous `np.ndarray` of its dtype (bfloat16 as float32) and
        shape; tensors that shared a storage no longer share memory.

    Raises:
        FileNotFoundError: If `path` does not exist.
        ValueError: If `path` is not a torch checkpoint, is corrupt, or uses the
            pre-0.4 tar format.
        pickle.UnpicklingError: If the pickle refers to anything but tensors,
            storages and `OrderedDict` (refused so that no code is executed).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"torch checkpoint {path} does not exist")
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    if tarfile.is_tarfile(path):
        raise ValueError(
            f"{path} uses the tar format of torch < 0.4, which is unsupported; "
            "re-save it with a recent torch: torch.save(torch.load(path), new_path)"
        )
    if _is_legacy_pickle(path):
        return _load_legacy(path)
    raise ValueError(
        f"{path} is not a PyTorch checkpoint (neither a torch.save zip archive "
        "nor a legacy torch.save pickle)"
    )


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Loads a PyTorch state dict (`torch.save(model.state_dict(), path)`).

    Args:
        path: The `.pth` file, zip or legacy format.

    Returns:
        A dict from parameter/buffer name (e.g. `"_conv_stem.weight"`) to a NumPy
        array in torch's layout (convolutions OIHW, linear layers (out, in)), in
        the order they were saved.

    Raises:
        FileNotFoundError, ValueError, pickle.UnpicklingError: As
            `load_torch_checkpoint`; ValueError also when the file holds something
            other than a flat mapping of names to tensors.
    """
    obj = load_torch_checkpoint(path)
    if not isinstance(obj, dict):
        raise ValueError(
            f"{os.fspath(path)} holds a {type(obj).__name__}, not a state dict; save "
            "the weights with torch.save(model.state_dict(), path)"
        )
    bad = [
        k
        for k, v in obj.items()
        if not isinstance(k, str) or not isinstance(v, np.ndarray)
    ]
    if bad:
        raise ValueError(
            f"{os.fspath(path)} is a dict but not a flat state dict: entries {bad[:5]} "
            "are not name -> tensor (a training checkpoint? pass its 'state_dict' "
            "entry, saved on its own with torch.save(ckpt['state_dict'], path))"
        )
    return dict(obj)
