"""Evaluation metrics for GLUE and NER, in plain numpy.

Why not sklearn/scipy/seqeval: the training image should not need them at run time, and each of them differs
from the reference scorers in small ways. The functions here are written to give the same numbers as
sklearn (accuracy, F1, Matthews correlation), scipy.stats (Pearson, Spearman) and, for NER, the CoNLL-2000
`conlleval` perl script; tests/test_metrics.py checks that against those references.
"""
from __future__ import annotations

import csv
from typing import Any, Iterable, Sequence

import numpy as np

from xtremedistil_tf.io import atomic_path

__all__ = [
    "accuracy",
    "f1",
    "matthews_corrcoef",
    "pearson",
    "spearman",
    "glue_metrics",
    "main_metric",
    "get_entities",
    "ner_metrics",
    "write_glue_predictions",
    "GLUE_TASKS",
]

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


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of predictions equal to the label (sklearn's accuracy_score)."""
    t, p = _pair(y_true, y_pred, "accuracy")
    return float(np.mean(t == p))


def f1(y_true: Any, y_pred: Any) -> float:
    """Binary F1 of the positive class 1 (sklearn's f1_score); 0.0 when there is no positive anywhere."""
    t, p = _pair(y_true, y_pred, "f1")
    t, p = t == 1, p == 1
    tp = float(np.sum(t & p))
    denom = 2.0 * tp + float(np.sum(~t & p)) + float(np.sum(t & ~p))
    return 2.0 * tp / denom if denom > 0 else 0.0


def matthews_corrcoef(y_true: Any, y_pred: Any) -> float:
    """Matthews correlation for binary or multiclass labels, sklearn's formula (Gorodkin's R_K).

    Returns 0.0 where it is undefined (all labels, or all predictions, one class), as sklearn does.
    """
    t, p = _pair(y_true, y_pred, "matthews_corrcoef")
    _, ids = np.unique(np.concatenate([t, p]), return_inverse=True)
    k = int(ids.max()) + 1
    n = len(t)
    cm = np.bincount(ids[:n] * k + ids[n:], minlength=k * k).reshape(k, k).astype(np.float64)
    t_sum, p_sum = cm.sum(axis=1), cm.sum(axis=0)
    n_correct, n_samples = np.trace(cm), cm.sum()
    cov_ytyp = n_correct * n_samples - np.dot(t_sum, p_sum)
    cov_ypyp = n_samples**2 - np.dot(p_sum, p_sum)
    cov_ytyt = n_samples**2 - np.dot(t_sum, t_sum)
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))


def _floats(x: Any, y: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = _pair(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), name)
    if len(a) < 2:
        raise ValueError(f"{name}: needs at least 2 examples, got {len(a)}")
    return a, b


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 0.0
    return float(np.clip(np.dot(a / na, b / nb), -1.0, 1.0))


def pearson(x: Any, y: Any) -> float:
    """Pearson correlation (scipy.stats.pearsonr's statistic).

    Where scipy gives nan for a constant input this gives 0.0, so model selection and JSON reports stay
    well defined; a nan or inf in the input gives nan.
    """
    return _corr(*_floats(x, y, "pearson"))


def _rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy.stats.rankdata(method='average'))."""
    sorter = np.argsort(x, kind="mergesort")
    inv = np.empty(len(x), dtype=np.intp)
    inv[sorter] = np.arange(len(x), dtype=np.intp)
    xs = x[sorter]
    first = np.concatenate([[True], xs[1:] != xs[:-1]])
    dense = np.cumsum(first)[inv]
    bounds = np.concatenate([np.nonzero(first)[0], [len(first)]])
    return 0.5 * (bounds[dense] + bounds[dense - 1] + 1)


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation with average ranks for ties (scipy.stats.spearmanr's statistic).

    Same conventions as `pearson`: 0.0 for a constant input, nan for a non-finite one.
    """
    a, b = _floats(x, y, "spearman")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan")
    return _corr(_rankdata(a), _rankdata(b))


# ---------------------------------------------------------------------------------------------------------
# GLUE
# ---------------------------------------------------------------------------------------------------------

# Metric names per task, as GLUE reports them (the first one listed by `main_metric` is used for selection).
_GLUE_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("mcc",),
    "sst2": ("accuracy",),
    "mrpc": ("f1", "accuracy", "acc_and_f1"),
    "qqp": ("f1", "accuracy", "acc_and_f1"),
    "stsb": ("pearson", "spearman", "corr"),
    "mnli": ("accuracy",),
    "mnli_matched": ("accuracy",),
    "mnli_mismatched": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
    "ax": ("mcc",),
}
GLUE_TASKS: tuple[str, ...] = tuple(_GLUE_METRICS)

_ALIASES = {
    "sst-2": "sst2",
    "sts-b": "stsb",
    "sts_b": "stsb",
    "mnli-m": "mnli_matched",
    "mnli_m": "mnli_matched",
    "mnli-mm": "mnli_mismatched",
    "mnli_mm": "mnli_mismatched",
    "mnli-matched": "mnli_matched",
    "mnli-mismatched": "mnli_mismatched",
}

# GLUE's submission server wants label strings for these tasks and 0/1 for the other classification tasks.
_STRING_LABEL_TASKS = frozenset({"mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte", "ax"})


def _canonical_task(task: str) -> str:
    """'SST-2', 'glue/sst2' and 'sst2' all name the same task."""
    name = str(task).strip().lower()
    if name.startswith("glue/"):
        name = name[len("glue/"):]
    name = _ALIASES.get(name, name)
    if name not in _GLUE_METRICS and name != "ner":
        known = ", ".join(GLUE_TASKS + ("ner",))
        raise ValueError(f"unknown task {task!r}; known tasks: {known}")
    return name


def main_metric(task: str) -> str:
    """The metric used to pick the best checkpoint: mcc for CoLA/AX, pearson for STS-B, f1 for MRPC/QQP/NER,
    accuracy otherwise. It is a key of `glue_metrics(task, ...)` (or of `ner_metrics` for 'ner')."""
    name = _canonical_task(task)
    return "f1" if name == "ner" else _GLUE_METRICS[name][0]


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
    name = _canonical_task(task)
    if name == "ner":
        raise ValueError("glue_metrics: 'ner' is scored with ner_metrics(true_tags, predicted_tags)")
    if name == "stsb":
        p, t = _scores(predictions, "predictions", name), _scores(labels, "labels", name)
        r, rho = pearson(t, p), spearman(t, p)
        return {"pearson": r, "spearman": rho, "corr": (r + rho) / 2.0}
    p, t = _class_ids(predictions, name), np.asarray(labels)
    if name in ("cola", "ax"):
        return {"mcc": matthews_corrcoef(t, p)}
    if name in ("mrpc", "qqp"):
        acc, f = accuracy(t, p), f1(t, p)
        return {"f1": f, "accuracy": acc, "acc_and_f1": (acc + f) / 2.0}
    return {"accuracy": accuracy(t, p)}


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
    name = _canonical_task(task)
    if name == "ner":
        raise ValueError("write_glue_predictions: 'ner' is not a GLUE task")
    if name == "stsb":
        values = [repr(float(v)) for v in _scores(predictions, "predictions", name)]
    else:
        ids = _class_ids(predictions, name)
        if name in _STRING_LABEL_TASKS:
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


# ---------------------------------------------------------------------------------------------------------
# NER: a line-by-line port of conlleval (CoNLL-2000 shared task scorer, version 2004-01-26)
# ---------------------------------------------------------------------------------------------------------


def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'), as conlleval: split at the first '-'; no '-' means no type.

    Like the perl (`$type ? $type : ""`), a type of '0' counts as no type.
    """
    prefix, sep, kind = tag.partition("-")
    if not sep:
        return tag, ""
    return prefix, ("" if kind == "0" else kind)


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """conlleval's endOfChunk: did a chunk end between the previous and the current word?"""
    return (
        (prev_tag == "B" and tag in ("B", "O"))
        or (prev_tag == "I" and tag in ("B", "O"))
        or (prev_tag == "E" and tag in ("E", "I", "O"))
        or (prev_tag not in ("O", ".") and prev_type != type_)
        or prev_tag in ("[", "]")
    )


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """conlleval's startOfChunk: did a chunk start between the previous and the current word?"""
    return (
        (tag == "B" and prev_tag in ("B", "I", "O"))
        or (tag == "I" and prev_tag in ("O", "E"))
        or (tag == "E" and prev_tag in ("E", "O"))
        or (tag not in ("O", ".") and prev_type != type_)
        or tag in ("[", "]")
    )


def _check_tags(tags: Sequence[Any], where: str) -> None:
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"{where}: tags must be strings such as 'B-PER', got {type(tag).__name__} {tag!r}")


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks of one tag sequence as (type, start, end), `end` inclusive, in order of their start.

    Uses conlleval's start/end rules, so IOB1 (an I-X after O or after another type opens a chunk), IOB2, IOE
    and the bracket tags behave as conlleval counts them; as in conlleval every chunk start opens a new chunk
    and the sequence end closes the last one. Note conlleval has no rule for S-: S-X S-X (and E-X B-X) of one
    type read as a single chunk there, and therefore here.
    """
    tags = list(tags)
    _check_tags(tags, "get_entities")
    entities: list[tuple[str, int, int]] = []
    open_start, open_type = -1, ""
    prev_tag, prev_type = "O", ""
    for i, raw in enumerate(tags + ["O"]):
        tag, type_ = _split_tag(raw)
        start = i < len(tags) and _start_of_chunk(prev_tag, tag, prev_type, type_)
        if open_start >= 0 and (start or _end_of_chunk(prev_tag, tag, prev_type, type_)):
            entities.append((open_type, open_start, i - 1))
            open_start = -1
        if start:
            open_start, open_type = i, type_
        prev_tag, prev_type = tag, type_
    if open_start >= 0:
        entities.append((open_type, open_start, len(tags) - 1))
    return entities


def _prf(correct: int, guessed: int, gold: int) -> dict[str, float]:
    precision = correct / guessed if guessed > 0 else 0.0
    recall = correct / gold if gold > 0 else 0.0
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f}


def ner_metrics(true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level scores exactly as conlleval computes them, as fractions in [0, 1] (conlleval prints %).

    The input is what conlleval would read from a file with one `word gold predicted` line per token and a
    blank line after every sentence. Returns precision (correct chunks / predicted chunks), recall (correct /
    gold chunks), f1, accuracy (token tags equal), the counts (`found_correct`, `found_guessed`,
    `correct_chunks`, `tokens`) and `per_type`: {type: {precision, recall, f1, found_correct, found_guessed,
    correct_chunks}} for every type seen in the gold or predicted chunks. A chunk is correct only if both
    sides start and end it at the same words with the same type.
    """
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(f"ner_metrics: {len(true_seqs)} gold sentences but {len(pred_seqs)} predicted ones")
    correct_chunk = found_correct = found_guessed = correct_tags = token_counter = 0
    per_correct: dict[str, int] = {}
    per_gold: dict[str, int] = {}
    per_guessed: dict[str, int] = {}
    in_correct = False
    last_correct, last_correct_type, last_guessed, last_guessed_type = "O", "", "O", ""

    def lines():
        for s, (gold, pred) in enumerate(zip(true_seqs, pred_seqs)):
            gold, pred = list(gold), list(pred)
            if len(gold) != len(pred):
                raise ValueError(f"ner_metrics: sentence {s} has {len(gold)} gold tags but {len(pred)} predicted")
            _check_tags(gold, f"ner_metrics: sentence {s} (gold)")
            _check_tags(pred, f"ner_metrics: sentence {s} (predicted)")
            for g, p in zip(gold, pred):
                yield g, p, False
            yield "O", "O", True  # the blank line: a sentence break, out of any chunk, not a token

    for gold_tag, pred_tag, boundary in lines():
        correct, correct_type = _split_tag(gold_tag)
        guessed, guessed_type = _split_tag(pred_tag)
        end_c = _end_of_chunk(last_correct, correct, last_correct_type, correct_type)
        end_g = _end_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
        if in_correct:
            if end_c and end_g and last_guessed_type == last_correct_type:
                in_correct = False
                correct_chunk += 1
                per_correct[last_correct_type] = per_correct.get(last_correct_type, 0) + 1
            elif end_c != end_g or guessed_type != correct_type:
                in_correct = False
        start_c = _start_of_chunk(last_correct, correct, last_correct_type, correct_type)
        start_g = _start_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
        if start_c and start_g and guessed_type == correct_type:
            in_correct = True
        if start_c:
            found_correct += 1
            per_gold[correct_type] = per_gold.get(correct_type, 0) + 1
        if start_g:
            found_guessed += 1
            per_guessed[guessed_type] = per_guessed.get(guessed_type, 0) + 1
        if not boundary:
            if correct == guessed and guessed_type == correct_type:
                correct_tags += 1
            token_counter += 1
        last_correct, last_correct_type = correct, correct_type
        last_guessed, last_guessed_type = guessed, guessed_type
    if in_correct:
        correct_chunk += 1
        per_correct[last_correct_type] = per_correct.get(last_correct_type, 0) + 1

    per_type = {}
    for t in sorted(set(per_gold) | set(per_guessed)):
        c, g, gold = per_correct.get(t, 0), per_guessed.get(t, 0), per_gold.get(t, 0)
        per_type[t] = {**_prf(c, g, gold), "found_correct": gold, "found_guessed": g, "correct_chunks": c}
    return {
        **_prf(correct_chunk, found_guessed, found_correct),
        "accuracy": correct_tags / token_counter if token_counter else 0.0,
        "found_correct": found_correct,
        "found_guessed": found_guessed,
        "correct_chunks": correct_chunk,
        "tokens": token_counter,
        "per_type": per_type,
    }
