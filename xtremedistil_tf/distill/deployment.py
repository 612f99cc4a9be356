"""A finished distillation's deployment outputs: the selected student's int8 exports (--export_int8), re-scored on
dev and test in their runtimes, and the cost report (--cost_report) of teacher, student and every export."""
from __future__ import annotations

from xtremedistil_tf import fs
from xtremedistil_tf.deploy.outputs import Reference, random_rows, write_deployment
from xtremedistil_tf.distill.outputs import STUDENT_WEIGHTS
from xtremedistil_tf.distill.teacher import TEACHER_WEIGHTS
from xtremedistil_tf.metrics import main_metric
from xtremedistil_tf.models.encoder import INPUT_NAMES
from xtremedistil_tf.models.heads import TOKEN_KINDS


def deploy(run, metrics: dict) -> None:
    """Writes int8/ and report.md/report.json for the finished run `run` (a Distillation); adds `int8` and
    `report` to `metrics`. Calibration (and quantization-aware tuning) rows come from the first transfer chunk: the
    text the student learnt on."""
    c = run.config
    metric = main_metric(run.kind, run.task.glue_task)
    teacher_scores = {s: v[metric] for s, v in (run.state.get("teacher") or {}).items()}
    transfer = run.data.representation_chunk(0)
    metrics.update(write_deployment(
        c, run.folder.folder, model=run.student.to_task_model(), name="student", length=c.seq_len,
        num_labels=run.student.num_labels, token_level=run.kind in TOKEN_KINDS,
        calibration=random_rows(transfer, c.int8_calibration_examples, c.seed), tuning=transfer, seed=c.seed,
        splits={s: {k: run.arrays[s][k] for k in INPUT_NAMES} for s in ("dev", "test") if s in run.arrays},
        score=run.score, metric=metric, scores={s: v[metric] for s, v in metrics["final"].items()},
        weights_file=run.folder.path(STUDENT_WEIGHTS),
        references=(Reference("teacher", run.teacher, teacher_scores, fs.join(run.teacher_dir, TEACHER_WEIGHTS)),),
        summary=metrics.get("summary"), title=f"Cost report: {c.model_dir}"))
