"""Classification and regression metrics, GLUE's per-task metrics and GLUE submission files.

The scores are sklearn's (accuracy, F1, Matthews correlation) and scipy.stats' (Pearson, Spearman), imported on
first use so that importing this module stays cheap. Around them: one input check with clear messages, and the
conventions this project reports (0.0 rather than nan for a constant input). Which metrics a task reports, and
how its submission file is written, comes from :mod:`xtremedistil_tf.data.registry`.
"""
from __future__ import annotations

import csv
from typing import Any, Iterable, Sequence

import numpy as np

from xtremedistil_tf.data import registry
from xtremedistil_tf.io import atomic_path

#: Every name glue_metrics scores (GLUE's tasks, MNLI's matched/mismatched dev sets, AX).
GLUE_TASKS: tuple[str, ...] = registry.GLUE_SCORING_NAMES

# ---------------------------------------------------------------------------------------------------------
# Plain classification / regression metrics
# ---------------------------------------------------------------------------------------------------------


def _pair(y_true: Any, y_pred: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Both arguments as 1-D arrays of the same, non-zero length; a clear ValueError otherwise."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(
            f"{name}: expects 1-D arrays, got shapes {t.shape} and {p.shape} "
            "(take the argmax of logits first, or use glue_metrics which does)"
        )
    if len(t) != len(p):
        raise ValueError(f"{name}: {len(t)} labels but {len(p)} predictions")
    if len(t) == 0:
        raise ValueError(f"{name}: no examples")
    return t, p


def _ids(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions as ids of their distinct values (equality, and so these scores, unchanged)."""
    _, ids = np.unique(np.concatenate([t, p]), return_inverse=True)
    return ids[: len(t)], ids[len(t):]


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of predictions equal to the label (sklearn's accuracy_score)."""
    from sklearn.metrics import accuracy_score

    t, p = _pair(y_true, y_pred, "accuracy")
    # As ids: sklearn refuses labels that look continuous (e.g. 0.5), which compare by equality as well as any.
    return float(accuracy_score(*_ids(t, p)))


def f1(y_true: Any, y_pred: Any) -> float:
    """Binary F1 of the positive class 1 (sklearn's f1_score); 0.0 when there is no positive anywhere."""
    from sklearn.metrics import f1_score

    t, p = _pair(y_true, y_pred, "f1")
    # Class 1 against the rest, as booleans: sklearn's binary mode would refuse labels such as {0, 2} or strings.
    return float(f1_score(t == 1, p == 1, zero_division=0.0))


def matthews_corrcoef(y_true: Any, y_pred: Any) -> float:
    """Matthews correlation for binary or multiclass labels (sklearn's matthews_corrcoef, Gorodkin's R_K).

    Returns 0.0 where it is undefined (all labels, or all predictions, one class), as sklearn does.
    """
    from sklearn.metrics import matthews_corrcoef as sk_mcc

    t, p = _pair(y_true, y_pred, "matthews_corrcoef")
    t, p = _ids(t, p)  # as in accuracy: sklearn refuses labels that look continuous
    # One class on both sides: sklearn gives the same 0.0 but warns about the confusion matrix's shape.
    if t.max() == 0 and p.max() == 0:
        return 0.0
    return float(sk_mcc(t, p))


def _floats(x: Any, y: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = _pair(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), name)
    if len(a) < 2:
        raise ValueError(f"{name}: needs at least 2 examples, got {len(a)}")
    return a, b


def _degenerate(a: np.ndarray, b: np.ndarray) -> float | None:
    """The reported value when a correlation is not defined: nan for non-finite input, 0.0 for a constant one."""
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan")
    # scipy returns nan (with a warning) for a constant input; 0.0 keeps model selection and JSON well defined.
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return None


def pearson(x: Any, y: Any) -> float:
    """Pearson correlation (scipy.stats.pearsonr's statistic).

    Where scipy gives nan for a constant input this gives 0.0, so model selection and JSON reports stay
    well defined; a nan or inf in the input gives nan.
    """
    from scipy.stats import pearsonr

    a, b = _floats(x, y, "pearson")
    special = _degenerate(a, b)
    return special if special is not None else float(pearsonr(a, b).statistic)


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation with average ranks for ties (scipy.stats.spearmanr's statistic).

    Same conventions as `pearson`: 0.0 for a constant input, nan for a non-finite one.
    """
    from scipy.stats import spearmanr

    a, b = _floats(x, y, "spearman")
    special = _degenerate(a, b)
    return special if special is not None else float(spearmanr(a, b).statistic)


# ---------------------------------------------------------------------------------------------------------
# GLUE
# ---------------------------------------------------------------------------------------------------------


def _class_ids(predictions: Any, task: str) -> np.ndarray:
    """Class ids from ids or from 2-D logits/probabilities (argmax over the last axis)."""
    p = np.asarray(predictions)
    if p.ndim == 2:
        if p.shape[1] < 2:
            raise ValueError(f"{task}: 2-D predictions need one column per class, got shape {p.shape}")
        return np.argmax(p, axis=-1)
    if p.ndim != 1:
        raise ValueError(f"{task}: predictions must be class ids (1-D) or logits (2-D), got shape {p.shape}")
    if p.dtype.kind == "f":
        if not np.all(np.isfinite(p)) or np.any(p != np.round(p)):
            raise ValueError(f"{task}: 1-D float predictions are not class ids; pass ids or 2-D logits")
        p = p.astype(np.int64)
    return p


def _scores(values: Any, what: str, task: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 1:
        raise ValueError(f"{task}: {what} must be one score per example, got shape {v.shape}")
    return v


def glue_metrics(task: str, predictions: Any, labels: Any) -> dict[str, float]:
    """GLUE's metrics for one task.

    `predictions` are class ids or logits (argmax taken) for classification tasks, float scores for STS-B.
    cola/ax -> mcc; sst2, qnli, rte, wnli, mnli(_matched/_mismatched) -> accuracy; mrpc, qqp -> f1, accuracy
    and acc_and_f1 (their mean); stsb -> pearson, spearman and corr (their mean).
    """
    name = registry.scoring_name(task)
    kind = registry.scored_task(name).kind
    if kind == "ner":
        raise ValueError("glue_metrics: 'ner' is scored with ner_metrics(true_tags, predicted_tags)")
    if kind == "qa":
        raise ValueError(f"glue_metrics: {name!r} is scored with metrics.squad (squad_v1_metrics, squad_v2_metrics)")
    wanted = registry.metric_names(name)
    if kind == "regression":
        p, t = _scores(predictions, "predictions", name), _scores(labels, "labels", name)
        r, rho = pearson(t, p), spearman(t, p)
        out = {"pearson": r, "spearman": rho, "corr": (r + rho) / 2.0}
    else:
        p, t = _class_ids(predictions, name), np.asarray(labels)
        if "mcc" in wanted:
            out = {"mcc": matthews_corrcoef(t, p)}
        elif "f1" in wanted:
            acc, f = accuracy(t, p), f1(t, p)
            out = {"f1": f, "accuracy": acc, "acc_and_f1": (acc + f) / 2.0}
        else:
            out = {"accuracy": accuracy(t, p)}
    return {k: out[k] for k in wanted}


def write_glue_predictions(
    path: str,
    task: str,
    predictions: Any,
    label_names: Sequence[str] | None = None,
    index: Iterable[Any] | None = None,
) -> None:
    """Writes a GLUE submission file (`index<TAB>prediction`, one row per test example), atomically.

    Classification predictions may be ids or logits. MNLI, QNLI, RTE and AX are written as label strings taken
    from `label_names` (required for them); CoLA, SST-2, MRPC, QQP and WNLI as 0/1 ids, which is what the GLUE
    server expects even when names exist; STS-B as floats. `index` defaults to 0..n-1 (the test files' order).
    """
    name = registry.scoring_name(task)
    spec = registry.scored_task(name)
    if spec.kind == "ner":
        raise ValueError("write_glue_predictions: 'ner' is not a GLUE task")
    if spec.kind == "regression":
        values = [repr(float(v)) for v in _scores(predictions, "predictions", name)]
    else:
        ids = _class_ids(predictions, name)
        if spec.submit_label_names:
            if not label_names:
                raise ValueError(f"write_glue_predictions: {name} needs label_names (GLUE wants label strings)")
            names = [str(n) for n in label_names]
            bad = ids[(ids < 0) | (ids >= len(names))]
            if bad.size:
                raise ValueError(f"write_glue_predictions: class id {int(bad[0])} has no name in {names}")
            values = [names[int(i)] for i in ids]
        else:
            values = [str(int(i)) for i in ids]
    rows = list(range(len(values))) if index is None else list(index)
    if len(rows) != len(values):
        raise ValueError(f"write_glue_predictions: {len(rows)} indices but {len(values)} predictions")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        w.writerow(["index", "prediction"])
        for i, v in zip(rows, values):
            w.writerow([i, v])
