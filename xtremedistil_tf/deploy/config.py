"""The deployment flags run_distillation.py and run_glue.py share (one definition, mixed into both configs)."""
from __future__ import annotations

import dataclasses

from xtremedistil_tf.config import option


@dataclasses.dataclass
class DeployOptions:
    """What is exported for deployment and how it is checked. None of it changes training (neutral keys)."""

    NEUTRAL_KEYS = ("export_int8", "int8_calibration_examples", "int8_max_drop", "deploy_threads", "latency_seconds",
                    "cost_report", "int8_qat_steps", "int8_qat_learning_rate")

    export_int8: bool = option(False, "export the final model to ONNX Runtime (float, int8 dynamic, int8 static) and "
                                      "LiteRT/TFLite (float, int8 dynamic-range, int8 full-integer) in int8/, each "
                                      "re-scored on the labelled splits in its own runtime and timed at batch 1 and "
                                      "32 (a runtime that is not installed is skipped)")
    int8_calibration_examples: int = option(256, "examples that calibrate static / full-integer int8 (drawn from "
                                                 "the transfer set, else the training set)")
    int8_max_drop: float = option(1.0, "an int8 export losing more than this many points of the task metric on dev "
                                       "against its runtime's float model is named in a warning and the report")
    int8_qat_steps: int = option(200, "when LiteRT's full-integer export loses more than --int8_max_drop: steps "
                                      "of quantization-aware tuning of a copy of the model (its layer norms "
                                      "computed as LiteRT's integer model does, towards the float model's logits), "
                                      "exported and re-scored again in int8-qat/ (0: never)")
    int8_qat_learning_rate: float = option(2e-5, "Adam's learning rate for --int8_qat_steps")
    deploy_threads: int = option(0, "intra-op threads of ONNX Runtime and LiteRT when re-scoring and timing (0: "
                                    "one per CPU core, as TensorFlow uses for the float models of the report)")
    latency_seconds: float = option(1.0, "the least time spent timing each model at each batch size (the median "
                                         "of at least 20 calls at batch 1 and 5 at batch 32 is reported)")
    cost_report: bool = option(True, "write report.md + report.json: parameters, disk size, measured latency and "
                                     "throughput, task metric of each model (and of each int8 export)")

    def deploy_problems(self) -> list[str]:
        problems = []
        if self.int8_calibration_examples < 1:
            problems.append("--int8_calibration_examples must be >= 1")
        if self.int8_max_drop < 0:
            problems.append("--int8_max_drop must be >= 0")
        if self.int8_qat_steps < 0:
            problems.append("--int8_qat_steps must be >= 0 (0: no quantization-aware tuning)")
        if self.int8_qat_learning_rate <= 0:
            problems.append("--int8_qat_learning_rate must be > 0")
        if self.latency_seconds < 0:
            problems.append("--latency_seconds must be >= 0")
        if self.deploy_threads < 0:
            problems.append("--deploy_threads must be >= 0 (0: one per CPU core)")
        return problems
