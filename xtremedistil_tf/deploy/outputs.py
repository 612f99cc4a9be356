"""A finished run's deployment outputs, the same for every app: the int8 exports of its model (--export_int8) and
its cost report (--cost_report)."""
from __future__ import annotations

import dataclasses

import numpy as np
from absl import logging

from xtremedistil_tf import fs
from xtremedistil_tf.deploy import qat
from xtremedistil_tf.deploy.config import DeployOptions
from xtremedistil_tf.deploy.int8 import INT8_DIR, Scorer, export_int8
from xtremedistil_tf.deploy.report import REPORT_MD, build_report, int8_costs, keras_cost, over_max_drop, write_report
from xtremedistil_tf.models.encoder import INPUT_NAMES


@dataclasses.dataclass
class Reference:
    """A model the report compares with the deployed one (the teacher): the model, its scores by split (main
    metric) and its weights file."""
    name: str
    model: object
    scores: dict
    weights_file: str | None


def random_rows(arrays: dict, size: int, seed: int) -> dict[str, np.ndarray]:
    """`size` random rows (seeded, in their original order) of the inputs in `arrays`."""
    n = len(arrays["input_ids"])
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))
    return {k: np.asarray(arrays[k])[rows] for k in INPUT_NAMES}


def write_deployment(options: DeployOptions, folder: str, *, model, name: str, length: int, num_labels: int,
                     token_level: bool, calibration: dict, splits: dict, score: Scorer, metric: str, scores: dict,
                     weights_file: str | None, references: tuple[Reference, ...] = (), summary: dict | None = None,
                     title: str = "", tuning: dict | None = None, seed: int = 0) -> dict:
    """Writes `folder`/int8 and `folder`/report.{md,json} as `options` ask; returns what goes into metrics.json
    (`int8`, `report`).

    Args:
      model: the task model to deploy (float, Keras); `name` its row in the report ("student", "model").
      calibration: inputs by name that calibrate static / full-integer int8.
      splits: labelled inputs by split to re-score; `score(split, logits)` their metrics; `scores` the model's
        own main metric by split.
      references: models the report lists above it (the teacher).
      summary: the run's stage summary, for the stage gains.
      tuning: inputs by name that quantization-aware tuning draws its rows from (default: `calibration`).
    """
    out = {}
    int8 = None
    if options.export_int8:
        logging.info("int8: exporting to %s (calibration: %d examples)", fs.join(folder, INT8_DIR),
                     len(calibration["input_ids"]))
        int8 = export_int8(model, fs.join(folder, INT8_DIR), length=length, num_labels=num_labels,
                           token_level=token_level, calibration=calibration, splits=splits, score=score,
                           metric=metric, threads=options.deploy_threads, min_seconds=options.latency_seconds)
        int8 = {k: v for k, v in int8.items() if k != "files"}
        out["int8"] = int8
        lost = over_max_drop(int8, options.int8_max_drop)
        if lost:
            logging.warning("int8: %s lose more than %g point(s) of %s on dev against their float model",
                            ", ".join(lost), options.int8_max_drop, metric)
        if " ".join(qat.TARGET) in lost and options.int8_qat_steps:
            int8["qat"] = qat.recover_with_qat(
                model, folder, int8, steps=options.int8_qat_steps, learning_rate=options.int8_qat_learning_rate,
                max_drop=options.int8_max_drop, seed=seed,
                tuning=random_rows(calibration if tuning is None else tuning, options.int8_qat_steps * qat.QAT_BATCH,
                                   seed),
                calibration=calibration, splits=splits, score=score, threads=options.deploy_threads,
                min_seconds=options.latency_seconds, token_level=token_level)
    if options.cost_report:
        timing = next(iter(splits.values()))
        rows = [keras_cost(r.name, r.model, arrays=timing, length=length, scores=r.scores,
                           weights_file=r.weights_file, min_seconds=options.latency_seconds) for r in references]
        rows.append(keras_cost(name, model, arrays=timing, length=length, scores=scores, weights_file=weights_file,
                               min_seconds=options.latency_seconds))
        rows += int8_costs(int8, name=name, params=rows[-1].params)
        report = build_report(title=title or f"Cost report: {folder}", metric=metric, length=length, models=rows,
                              summary=summary, int8=int8, max_drop=options.int8_max_drop if int8 else None,
                              deployed=name)
        write_report(folder, report)
        out["report"] = {"file": REPORT_MD, **({"teacher_over_student": report["teacher_over_student"]}
                                              if "teacher_over_student" in report else {})}
        logging.info("cost report written to %s", fs.join(folder, REPORT_MD))
    return out
