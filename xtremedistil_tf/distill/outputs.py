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
    """metrics.json's content: the teacher's and every stage's scores, the selection, the final scores."""
    stages = state["stages"]
    return {"teacher": state["teacher"], "selected_stage": state.get("selected"), "final": final,
            "stages": {k: {kk: vv for kk, vv in v.items() if kk != "history"} for k, v in stages.items()},
            "histories": {k: v["history"] for k, v in stages.items()},
            "mode": mode, "wall_time_total": sum(v["wall_time"] for v in stages.values())}


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


def log_summary(metrics: dict) -> None:
    """The run's scores, stage by stage, in the log."""
    if not metrics:
        return
    logging.info("teacher: %s", metrics.get("teacher"))
    for k, v in sorted(metrics.get("stages", {}).items(), key=lambda kv: int(kv[0])):
        logging.info("stage %s (%s, %s): %.1f s, dev %s, test %s", k, v["loss"], "+".join(v["trainable"]),
                     v["wall_time"], v.get("dev"), v.get("test"))
    logging.info("selected: %s; final: %s", metrics.get("selected_stage"), metrics.get("final"))
