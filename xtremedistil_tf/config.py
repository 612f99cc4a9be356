"""Configuration shared by every entry point: a field helper whose help text becomes the flag's help, and the
runtime settings (seed, precision, strategy, compilation, logging) that run_distillation.py and run_glue.py share."""
from __future__ import annotations

import dataclasses

from xtremedistil_tf.progress import PROGRESS_MODES
from xtremedistil_tf.strategy import POLICIES, STRATEGIES, set_up_runtime


def option(default, help_text: str):
    """A config field with its command-line help (see `cli.define_config_flags`)."""
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class RuntimeConfig:
    """How a run executes, shared by every app. `NEUTRAL_KEYS` change how fast or how loudly a run goes, not what
    it computes: a rerun into the same output folder may change them."""

    NEUTRAL_KEYS = ("strategy", "tpu", "verbose", "log_every", "progress", "tensorboard", "fixed_shapes",
                    "jit_compile", "steps_per_execution", "tfds_data_dir")

    seed: int = option(42, "random seed (initialisation, batch order, dropout, samples)")
    opt_policy: str = option("float32", f"precision policy: {', '.join(POLICIES)} (auto: mixed_bfloat16 on TPUs "
                                           "and Ampere+ GPUs, float32 on CPUs)")
    strategy: str = option("auto", f"tf.distribute strategy: {', '.join(STRATEGIES)} (multi_worker reads "
                                   "TF_CONFIG)")
    tpu: str = option("", "TPU name or address for --strategy=tpu")
    jit_compile: bool = option(False, "compile with XLA: the training steps' forward, loss and gradients, and the "
                                      "forward passes that compute teacher outputs and evaluate")
    steps_per_execution: int = option(1, "train steps run in one graph call (a loop on the device, as Keras' "
                                          "steps_per_execution): the same steps, less per-step overhead for small "
                                          "models and TPUs; losses are logged in groups of N")
    fixed_shapes: bool = option(False, "pad every batch to the padded length (always on TPU); otherwise each batch "
                                       "is cut to its longest example, which gives the same numbers faster")
    deterministic: bool = option(False, "TF op determinism: reruns and resumed runs give identical weights")
    verbose: bool = option(False, "show tracebacks on errors")
    log_every: int = option(50, "log the running loss every N steps (0: never); also how often the training curves "
                                "are written to TensorBoard (every 50 steps with 0)")
    progress: str = option("auto", "progress of training epochs and predictions: bar (a Keras progress bar on "
                                   "stderr), log (a log line every --log_every steps with the ETA), none; auto: bar "
                                   "when stderr is a terminal, else log")
    tensorboard: bool = option(True, "write TensorBoard event files (training loss, learning rate, examples/s, dev "
                                     "metrics, the config) to the output folder's tensorboard/")
    tfds_data_dir: str = option("", "TFDS data_dir for TFDS tasks, e.g. gs://bucket/tensorflow_datasets (default: "
                                    "TFDS' own)")

    def runtime_problems(self) -> list[str]:
        """What is wrong with the runtime flags (empty when nothing is)."""
        problems = []
        if self.opt_policy not in POLICIES:
            problems.append(f"--opt_policy={self.opt_policy!r}: expected one of {', '.join(POLICIES)}")
        if self.steps_per_execution < 1:
            problems.append("--steps_per_execution must be >= 1")
        if self.log_every < 0:
            problems.append("--log_every must be >= 0")
        if self.progress not in PROGRESS_MODES:
            problems.append(f"--progress={self.progress!r}: expected one of {', '.join(PROGRESS_MODES)}")
        return problems

    def set_up(self):
        """Seeds, determinism, precision and strategy; returns (strategy, chief, whether batches may be trimmed)."""
        return set_up_runtime(seed=self.seed, deterministic=self.deterministic, opt_policy=self.opt_policy,
                              strategy=self.strategy, tpu=self.tpu, fixed_shapes=self.fixed_shapes)
