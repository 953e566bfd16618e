"""What loading an export checks of it before running any of its code.

An export folder is trusted input: a SavedModel is a program, and its
signatures run whatever TensorFlow ops it holds. Serve, index and search
only with exports you made or trust. Two checks catch the mistakes and the
plainest abuse without running the model:

  `weights_fingerprint`  sha256 of every variable the SavedModel restores,
                         read as data from its checkpoint. The export
                         records it in its identity (`contract.IDENTITY_FILE`)
                         and `check_export` recomputes it, so an identity
                         file copied beside other weights is refused, and an
                         index records it, so it is held to those weights
                         (`contract.check_compatible`). The model
                         fingerprint, by contrast, is what the model's own
                         graph answers.
  `file_ops`             ops reached from the signatures that read, write or
                         list files; an embedding model has none, so
                         `check_export` refuses a signature that does.

Neither proves a graph harmless (it is code), and a model served by TF
Serving is checked by TF Serving's operator, not here.
"""

import hashlib
import os
from collections.abc import Iterable

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from beau_tf.serving import contract

WEIGHTS_FINGERPRINT = contract.WEIGHTS_FINGERPRINT
# The checkpoint's own bookkeeping, not a weight.
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
# Ops that reach the file system (or read whole files as datasets); the
# checkpoint's own save and restore functions are not reached from a
# signature, so SaveV2 and RestoreV2 count here too.
FILE_OPS = frozenset(
    {
        "ReadFile",
        "WriteFile",
        "MatchingFiles",
        "ImmutableConst",
        "Save",
        "SaveSlices",
        "SaveV2",
        "MergeV2Checkpoints",
        "Restore",
        "RestoreSlice",
        "RestoreV2",
        "TFRecordDataset",
        "TFRecordDatasetV2",
        "TextLineDataset",
        "FixedLengthRecordDataset",
        "FixedLengthRecordDatasetV2",
        "LoadAndRemapMatrix",
    }
)


class UntrustedExportError(ValueError):
    """An export whose weights are not the ones it was exported with, or
    whose signatures reach files; the message says which."""


def weights_fingerprint(saved_model_dir: str) -> str:
    """sha256 of every variable of a SavedModel, by checkpoint key (name,
    dtype, shape and values), read without running the model."""
    reader = tf.train.load_checkpoint(
        os.path.join(saved_model_dir, "variables", "variables")
    )
    digest = hashlib.sha256()
    for key in sorted(reader.get_variable_to_dtype_map()):
        if key == _OBJECT_GRAPH_KEY:
            continue
        value = reader.get_tensor(key)
        digest.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(
            value.tobytes() if value.dtype != object else repr(value).encode()
        )
    return digest.hexdigest()


def _called_functions(node_defs: Iterable) -> set[str]:
    """Names of the functions the nodes call (calls, branches, loops)."""
    names = set()
    for node in node_defs:
        for value in node.attr.values():
            if value.HasField("func"):
                names.add(value.func.name)
            names.update(func.name for func in value.list.func)
    return names


def file_ops(saved_model_dir: str) -> dict[str, set[str]]:
    """Per signature, the `FILE_OPS` it reaches (through every function it
    calls); signatures that reach none are left out."""
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as stream:
        saved.ParseFromString(stream.read())
    found = {}
    for meta_graph in saved.meta_graphs:
        graph = meta_graph.graph_def
        library = {f.signature.name: f for f in graph.library.function}
        nodes = {node.name: node for node in graph.node}
        for name, signature in meta_graph.signature_def.items():
            # The outputs' nodes, and every node they depend on.
            pending = [
                tensor.name.split(":")[0].lstrip("^")
                for tensor in signature.outputs.values()
            ]
            reached_nodes, functions = set(), set()
            while pending:
                node_name = pending.pop()
                if node_name in reached_nodes or node_name not in nodes:
                    continue
                reached_nodes.add(node_name)
                node = nodes[node_name]
                pending += [i.split(":")[0].lstrip("^") for i in node.input]
            ops = {nodes[n].op for n in reached_nodes}
            calls = _called_functions(nodes[n] for n in reached_nodes)
            while calls:
                function = calls.pop()
                if function in functions or function not in library:
                    continue
                functions.add(function)
                body = library[function].node_def
                ops.update(node.op for node in body)
                calls |= _called_functions(body)
            reached = ops & FILE_OPS
            if reached:
                found[name] = reached
    return found


def check_export(saved_model_dir: str, identity: dict | None = None) -> None:
    """Refuses an export whose weights differ from those it recorded at
    export, or whose signatures reach files.

    An export older than the weights fingerprint records none; its weights
    are not checked.

    Args:
      saved_model_dir: the export version folder.
      identity: its identity, if already read (`contract.model_identity`);
        None: read here ({} for a SavedModel without one, whose weights are
        then not checked).

    Raises:
      UntrustedExportError: as above.
    """
    if identity is None:
        has_identity = os.path.exists(
            os.path.join(saved_model_dir, contract.IDENTITY_FILE)
        )
        identity = (
            contract.model_identity(saved_model_dir) if has_identity else {}
        )
    recorded = identity.get(WEIGHTS_FINGERPRINT)
    if recorded:
        actual = weights_fingerprint(saved_model_dir)
        if actual != recorded:
            raise UntrustedExportError(
                f"the weights of {saved_model_dir} are not the ones it was "
                f"exported with (its {contract.IDENTITY_FILE} records "
                f"{recorded[:12]}…, its variables hash to {actual[:12]}…): "
                "the folder was changed after export. Load only exports you "
                "made or trust; re-export it with python -m beau_tf.export."
            )
    reached = file_ops(saved_model_dir)
    if reached:
        described = "; ".join(
            f"{name}: {', '.join(sorted(ops))}" for name, ops in reached.items()
        )
        raise UntrustedExportError(
            f"{saved_model_dir} has signatures that read or write files "
            f"({described}); a beau_tf export has none. A SavedModel is a "
            "program: load only exports you made or trust."
        )
