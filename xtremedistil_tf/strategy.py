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
#: What --opt_policy accepts: a precision, or "auto" (see `resolve_precision`).
POLICIES = PRECISIONS + ("auto",)
#: CPU flags (Linux /proc/cpuinfo names) of instructions that compute bfloat16 products natively.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


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


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where the file does not exist)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def auto_precision(strategy: tf.distribute.Strategy | None = None, flags: frozenset[str] | None = None
                   ) -> tuple[str, str]:
    """The precision --opt_policy auto picks, and why (for the log).

    mixed_bfloat16 on TPUs and on GPUs of compute capability 8.0 and up: bfloat16 is their fast path, and their
    float32 matmuls already multiply at reduced precision (bfloat16 passes on TPU, TF32 on Ampere). float32 on CPUs,
    even those with AMX-BF16 or AVX512-BF16: on the reference run mixed_bfloat16 scored below float32's seed spread
    (benchmarks/README.md, "Precision by machine"); --opt_policy mixed_bfloat16 still chooses it.
    """
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16", "TPU"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        caps = [tf.config.experimental.get_device_details(g).get("compute_capability") or (0, 0) for g in gpus]
        lowest = min(tuple(c) for c in caps)
        return ("mixed_bfloat16" if lowest >= (8, 0) else "float32"), f"GPU compute capability {lowest[0]}.{lowest[1]}"
    flags = cpu_flags() if flags is None else flags
    found = [f for f in BF16_CPU_FLAGS if f in flags]
    return "float32", ("CPU with " + " and ".join(found) if found else "CPU without bfloat16 units") + \
        "; bfloat16 costs accuracy on CPU runs (see benchmarks/README.md)"


def resolve_precision(policy: str, strategy: tf.distribute.Strategy | None = None,
                      flags: frozenset[str] | None = None) -> str:
    """`policy`, with "auto" replaced by `auto_precision`'s choice (logged with its reason)."""
    if policy not in POLICIES:
        raise ConfigError(f"--opt_policy={policy!r}: expected one of {', '.join(POLICIES)}")
    if policy != "auto":
        return policy
    chosen, why = auto_precision(strategy, flags)
    logging.info("--opt_policy auto: %s (%s)", chosen, why)
    return chosen


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
    chosen = make_strategy(strategy, tpu or None)
    set_precision(resolve_precision(opt_policy, chosen))
    trim = not (fixed_shapes or isinstance(chosen, tf.distribute.TPUStrategy))
    return chosen, is_chief(chosen), trim
