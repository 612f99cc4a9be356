"""Scoring a model's logits on a labelled split with the task's own metrics."""
from __future__ import annotations

import numpy as np

from xtremedistil_tf import metrics


def score_logits(kind: str, logits: np.ndarray, labels: np.ndarray, *, label_names=None,
                 glue_task: str = "") -> dict[str, float]:
    """Metrics for one split. Classification: accuracy (plus the GLUE task's metrics); regression: Pearson and
    Spearman; NER: conlleval entity precision/recall/F1 over positions whose label is >= 0 (first sub-tokens)."""
    if kind == "ner":
        pred = logits.argmax(-1)
        true_seqs, pred_seqs = [], []
        for p_row, t_row in zip(pred, labels):
            keep = t_row >= 0
            true_seqs.append([label_names[i] for i in t_row[keep]])
            pred_seqs.append([label_names[i] if i < len(label_names) else "O" for i in p_row[keep]])
        m = metrics.ner_metrics(true_seqs, pred_seqs)
        return {k: float(m[k]) for k in ("precision", "recall", "f1", "accuracy")}
    if kind == "regression":
        preds = logits[:, 0] if logits.ndim == 2 else logits
        out = {"pearson": metrics.pearson(preds, labels), "spearman": metrics.spearman(preds, labels)}
        out["corr"] = (out["pearson"] + out["spearman"]) / 2
        return out
    out = {"accuracy": metrics.accuracy(labels, logits.argmax(-1))}
    if glue_task:
        out.update(metrics.glue_metrics(glue_task, logits, labels))
    return out


def main_metric(kind: str, glue_task: str = "") -> str:
    if kind == "ner":
        return "f1"
    if kind == "regression":
        return "pearson"
    return metrics.main_metric(glue_task) if glue_task else "accuracy"
