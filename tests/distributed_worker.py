"""Runs one distillation in its own process (for multi-replica and multi-worker tests).

usage: python distributed_worker.py '<json of DistilConfig overrides>' [logical_cpus]
Logical CPU devices must be configured before TensorFlow starts, hence a process of its own.
"""
import json
import sys

import tensorflow as tf
from absl import logging

logging.set_verbosity(logging.INFO)

if len(sys.argv) > 2 and int(sys.argv[2]) > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[2]))

from xtremedistil_tf.distill.config import DistilConfig  # noqa: E402
from xtremedistil_tf.distill.runner import run_distillation  # noqa: E402

metrics = run_distillation(DistilConfig(**json.loads(sys.argv[1])))
print("FINAL", json.dumps(metrics["final"]))
