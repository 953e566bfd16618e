"""Distribution strategies for training, and where each worker writes.

Under `--strategy=multi_worker` every worker runs the same command with its
own `TF_CONFIG` (README, "Training on several workers"), and the same code,
saving included: saving reads distributed variables, which can take collective
ops that every worker must join. Only the chief (the "chief" task, else worker
0) writes into the workdir; each other worker writes into a temporary folder
of its own and removes it (the pattern of TensorFlow's multi-worker tutorial).
Every worker resumes from the chief's checkpoints, so on several machines the
workdir must be one folder that all of them see.
"""

import contextlib
import os
import shutil
from collections.abc import Iterator

from absl import logging
import tensorflow as tf

from beau_tf.training import config as config_lib

# The dtypes collective all-reduce takes (CollectiveReduceV2's T).
_ALL_REDUCE_DTYPES = (
    tf.bfloat16,
    tf.float16,
    tf.float32,
    tf.float64,
    tf.int32,
    tf.int64,
)


class KerasMultiWorkerMirroredStrategy(
    tf.distribute.MultiWorkerMirroredStrategy
):
    """The multi-worker strategy, with a `reduce` that Keras 3's `fit` can use.

    Keras 3's `fit` under this strategy (keras-team/keras#20585) calls `reduce`
    in ways the base class refuses; seen here with TensorFlow 2.20 and Keras
    3.15.1, two workers:

    - To build the model, it reduces the first batch, a dict of per-replica
      tensors: "Attempt to convert a value ({'image': PerReplica:...}) with an
      unsupported type (<class 'dict'>) to a Tensor". That batch's uint8
      images are then refused by the all-reduce ("Value for attr 'T' of uint8
      is not in the list of allowed values").
    - Every step, it reduces the scalar losses along axis 0: "Invalid
      reduction dimension 0 for input with 0 dimensions".

    This `reduce` maps over nests, reduces scalars whole and other dtypes as
    float32. Remove it once Keras's `fit` runs under the base class.
    """

    def reduce(self, reduce_op, value, axis):
        return tf.nest.map_structure(
            lambda one: self._reduce_tensor(reduce_op, one, axis), value
        )

    def _reduce_tensor(self, reduce_op, value, axis):
        local = self.experimental_local_results(value)[0]
        if local.shape.rank == 0:
            axis = None  # a scalar's only reduction is the whole of it
        if local.dtype in _ALL_REDUCE_DTYPES:
            return super().reduce(reduce_op, value, axis)
        # expand_composites casts each replica's tensor of a PerReplica.
        as_float = tf.nest.map_structure(
            lambda tensor: tf.cast(tensor, tf.float32),
            value,
            expand_composites=True,
        )
        return tf.cast(super().reduce(reduce_op, as_float, axis), local.dtype)


def build_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """The tf.distribute strategy named by `--strategy`.

    Args:
      name: one of `config.STRATEGIES`; "multi_worker" reads the cluster and
        this worker's place in it from the TF_CONFIG environment variable.
      tpu: the TPU's address for "tpu" ("" = local, or from the environment).

    Raises:
      ValueError: an unknown name.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return KerasMultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(
        f"strategy={name!r}; one of {config_lib.STRATEGIES} expected."
    )


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's outputs (one worker of several)."""
    return strategy.extended.should_checkpoint


def worker_temp_dir(workdir: str, strategy: tf.distribute.Strategy) -> str:
    """Where a non-chief worker writes: `<workdir>/worker<N>_temp`.

    The name is the task's type and index in TF_CONFIG.
    """
    resolver = strategy.cluster_resolver
    return os.path.join(workdir, f"{resolver.task_type}{resolver.task_id}_temp")


@contextlib.contextmanager
def output_dir(workdir: str, strategy: tf.distribute.Strategy) -> Iterator[str]:
    """Yields the folder this worker writes checkpoints, events and models to.

    The chief's is `workdir`. Another worker's is `worker_temp_dir`, emptied
    first (a killed run leaves it behind) and removed when the block ends.
    """
    if is_chief(strategy):
        yield workdir
        return
    temporary = worker_temp_dir(workdir, strategy)
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    logging.info("Not the chief: writing to %s, removed at the end.", temporary)
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
