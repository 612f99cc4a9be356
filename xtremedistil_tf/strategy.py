"""The tf.distribute strategy and the Keras precision policy, chosen from flags."""
from __future__ import annotations

import json
import os

import keras
import tensorflow as tf
from absl import logging

from xtremedistil_tf.errors import ConfigError

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def make_strategy(name: str = "auto", tpu: str | None = None) -> tf.distribute.Strategy:
    """`auto`: TPU if --tpu is given, all local GPUs if more than one, multi-worker if TF_CONFIG names a cluster,
    else the default strategy."""
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy={name!r}: expected one of {STRATEGIES}")
    if name == "auto":
        if tpu:
            name = "tpu"
        elif "TF_CONFIG" in os.environ and json.loads(os.environ["TF_CONFIG"]).get("cluster", {}).get("worker"):
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    elif name == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.RING))
    elif name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    logging.info("strategy: %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy


def set_precision(policy: str) -> None:
    """Sets the global Keras precision policy, rejecting names outside PRECISIONS with a ConfigError."""
    if policy not in PRECISIONS:
        raise ConfigError(f"--precision={policy!r}: expected one of {PRECISIONS}")
    keras.mixed_precision.set_global_policy(policy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files (worker 0 of a multi-worker cluster, or the only one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    return resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0)


def set_up_runtime(*, seed: int, deterministic: bool, opt_policy: str, strategy: str, tpu: str | None,
                   fixed_shapes: bool):
    """Seeds, op determinism, precision policy and strategy, as every entry point needs them. Returns
    (strategy, whether this process is the chief, whether batches may be cut to their longest example)."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    set_precision(opt_policy)
    chosen = make_strategy(strategy, tpu or None)
    trim = not (fixed_shapes or isinstance(chosen, tf.distribute.TPUStrategy))
    return chosen, is_chief(chosen), trim
