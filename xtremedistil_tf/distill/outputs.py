"""What a finished run leaves in model_dir: the student (Keras weights + config, word embeddings, Hugging Face
folder, SavedModel), metrics.json, plots, and the summary in the log."""
from __future__ import annotations

from absl import logging

from xtremedistil_tf import io
from xtremedistil_tf.distill.run_folder import METRICS_FILE
from xtremedistil_tf.models.saving import save_model

STUDENT_WEIGHTS = "xtremedistil.weights.h5"
STUDENT_CONFIG = "student-config.json"


def run_metrics(state: dict, final: dict, mode: str) -> dict:
    """metrics.json's content: the teacher's and every stage's scores, the selection, the final scores, and the
    end-of-run summary table (`summary`, see stage_summary)."""
    stages = state["stages"]
    metrics = {"teacher": state["teacher"], "selected_stage": state.get("selected"), "final": final,
               "stages": {k: {kk: vv for kk, vv in v.items() if kk != "history"} for k, v in stages.items()},
               "histories": {k: v["history"] for k, v in stages.items()},
               "mode": mode, "wall_time_total": sum(v["wall_time"] for v in stages.values())}
    metrics["summary"] = stage_summary(metrics)
    return metrics


def main_metric_of(metrics: dict) -> str | None:
    """The run's main metric: the selection's, else the first metric of the first scored stage or of the teacher
    (None in a run without scores, such as a task-agnostic one)."""
    selected = metrics.get("selected_stage") or {}
    if selected.get("metric"):
        return selected["metric"]
    scored = [v for _, v in _sorted_stages(metrics)] + [metrics.get("teacher") or {}]
    for info in scored:
        for split in ("dev", "test"):
            if info.get(split):
                return next(iter(info[split]))
    return None


def _sorted_stages(metrics: dict) -> list[tuple[str, dict]]:
    return sorted((metrics.get("stages") or {}).items(), key=lambda kv: int(kv[0]))


def stage_summary(metrics: dict) -> dict:
    """The end-of-run table: one row per stage, in order, with its loss, the groups it trained, its epochs (one a
    chunk pass), its own training loss on a sample of its data before and after it, its dev and test main metric
    (None when not scored: representation stages, task-agnostic runs) and its seconds; plus the main metric and
    the selected stage (None when nothing was selected)."""
    metric = main_metric_of(metrics)
    histories = metrics.get("histories") or {}
    rows = []
    for k, info in _sorted_stages(metrics):
        rows.append({"stage": int(k), "loss": info.get("loss"), "trainable": list(info.get("trainable") or []),
                     "epochs": len(histories.get(k) or []),
                     "train_loss_before": info.get("train_loss_before"),
                     "train_loss_after": info.get("train_loss_after"),
                     "dev": (info.get("dev") or {}).get(metric), "test": (info.get("test") or {}).get(metric),
                     "seconds": info.get("wall_time")})
    return {"metric": metric, "stages": rows, "selected": metrics.get("selected_stage")}


def _fmt(value, spec: str) -> str:
    if value is None:
        return "-"
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def summary_table(summary: dict) -> str:
    """The summary as a fixed-width text table, the selected stage marked with `*`."""
    selected = (summary.get("selected") or {}).get("stage")
    header = ("stage", "loss", "trained", "epochs", "loss before", "loss after", "dev", "test", "seconds")
    lines = [header]
    for r in summary["stages"]:
        lines.append((("*" if r["stage"] == selected else "") + str(r["stage"]), str(r["loss"]),
                      "+".join(r["trainable"]) or "-", str(r["epochs"]), _fmt(r["train_loss_before"], ".4g"),
                      _fmt(r["train_loss_after"], ".4g"), _fmt(r["dev"], ".4f"), _fmt(r["test"], ".4f"),
                      _fmt(r["seconds"], ".1f")))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    left = {1, 2}  # text columns; numbers right-aligned
    return "\n".join("  ".join(cell.ljust(w) if i in left else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(line, widths))).rstrip() for line in lines)


def write_outputs(folder, student, metrics: dict, *, label_names, kind: str, tokenizer, export_hf: bool,
                  export_saved_model: bool) -> None:
    """Writes the student and the run's metrics into the run folder, each file atomically."""
    save_model(student, folder.folder, STUDENT_WEIGHTS, STUDENT_CONFIG,
               extra={"label_names": label_names, "kind": kind})
    io.save_npy(folder.path("word_embedding.npy"), student.encoder.embeddings.word_embeddings.embeddings.numpy())
    write_metrics(folder, metrics)
    task_model = student.to_task_model()
    if export_hf:
        from xtremedistil_tf.convert.export import export_hf as write_hf
        write_hf(task_model, folder.path("hf"), tokenizer=tokenizer,
                 label_names=label_names if kind != "regression" else None)
    if export_saved_model:
        from xtremedistil_tf.convert.export import export_saved_model as write_saved_model
        write_saved_model(task_model, folder.path("saved_model"))
    logging.info("outputs written to %s", folder.folder)


ENCODER_DIR = "encoder"


def write_metrics(folder, metrics: dict) -> None:
    """metrics.json and the plots alone (a task-agnostic run has no task model to write)."""
    io.write_json(folder.path(METRICS_FILE), metrics)
    _plot(folder, metrics)


def write_encoder(folder, encoder, *, tokenizer, export_saved_model: bool = True) -> None:
    """The student's encoder without a head, the general checkpoint: `encoder/` (a Hugging Face BertModel folder
    with the tokenizer, for transformers, run_glue.py --model and run_distillation.py --pt_student_checkpoint),
    `encoder_keras/` (Keras weights + config) and `encoder_saved_model/`."""
    from xtremedistil_tf.convert.export import export_hf, save_keras
    from xtremedistil_tf.convert.export import export_saved_model as write_saved_model
    export_hf(encoder, folder.path(ENCODER_DIR), tokenizer=tokenizer)
    save_keras(encoder, folder.path(ENCODER_DIR + "_keras"), tokenizer=tokenizer)
    if export_saved_model:
        write_saved_model(encoder, folder.path(ENCODER_DIR + "_saved_model"), tokenizer=tokenizer)
    logging.info("general checkpoint (the student's encoder, no head) written to %s", folder.path(ENCODER_DIR))


def _plot(folder, metrics: dict) -> None:
    try:
        from xtremedistil_tf.distill.plots import plot_run
        plot_run(metrics, folder.path("plots"))
    except Exception as e:  # noqa: BLE001 - plots are a convenience, never a failure
        logging.warning("plots not written: %s", e)


def _scores(scores: dict | None) -> str:
    """`{"dev": {"accuracy": 0.81}}` as `dev accuracy 0.8100`."""
    parts = []
    for split, values in (scores or {}).items():
        if values:
            parts.append(f"{split} " + " ".join(f"{k} {_fmt(v, '.4f')}" for k, v in values.items()))
    return ", ".join(parts) or "-"


def log_summary(metrics: dict) -> None:
    """The run's summary in the log: a table of every stage (loss, trained groups, epochs, training loss before
    and after, dev and test main metric, seconds), then the teacher, the selected stage and the final scores."""
    if not metrics:
        return
    summary = stage_summary(metrics)  # from the stages themselves, so an older metrics.json is summarised too
    metric = summary["metric"]
    logging.info("run summary (%s mode, %d stages, %.1f s; dev/test: %s; loss before/after: the stage's own loss "
                 "on a sample of its training data; * = selected):\n%s", metrics.get("mode", "?"),
                 len(summary["stages"]), float(metrics.get("wall_time_total") or 0.0), metric or "none",
                 summary_table(summary))
    logging.info("teacher: %s", _scores(metrics.get("teacher")))
    selected = summary["selected"]
    if selected:
        logging.info("selected: stage %s (%s %s %s); final: %s", selected.get("stage"), selected.get("split"),
                     selected.get("metric"), _fmt(selected.get("score"), ".4f"), _scores(metrics.get("final")))
    else:
        logging.info("selected: none (the last stage's weights); final: %s", _scores(metrics.get("final")))
