"""Scoring a model's logits on a labelled split with the task's own metrics, and naming the metric that picks
the best checkpoint."""
from __future__ import annotations

import numpy as np

from xtremedistil_tf.data import registry
from xtremedistil_tf.metrics.glue import accuracy, glue_metrics, pearson, spearman
from xtremedistil_tf.metrics.ner import flat_ner_metrics, ner_metrics


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
        m = ner_metrics(true_seqs, pred_seqs)
        return {k: float(m[k]) for k in ("precision", "recall", "f1", "accuracy")}
    if kind == "regression":
        preds = logits[:, 0] if logits.ndim == 2 else logits
        out = {"pearson": pearson(preds, labels), "spearman": spearman(preds, labels)}
        out["corr"] = (out["pearson"] + out["spearman"]) / 2
        return out
    out = {"accuracy": accuracy(labels, logits.argmax(-1))}
    if glue_task:
        out.update(glue_metrics(glue_task, logits, labels))
    return out


def score_ner_like_original(logits: np.ndarray, labels: np.ndarray, label_names, special_tokens) -> dict[str, float]:
    """NER scored as the original release did, on labels of its scheme (every position labelled: words' first
    sub-tokens with their tags, later sub-tokens `X`, and [PAD]/[CLS]/[SEP] with those names).

    `token_accuracy`: argmax equal to the label over every position, pads included (Keras' `val_acc`, which stopped
    its training). `precision`/`recall`/`f1`/`accuracy`: `flat_ner_metrics` over the positions whose gold label
    name does not contain a special token (a substring test, as the original), row after row in one flat list.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.min() < 0:
        raise ValueError("score_ner_like_original: expected [examples, tokens] labels >= 0 (every position "
                         f"labelled, the original's scheme); got shape {labels.shape}, min {labels.min()}")
    pred = logits.argmax(-1)
    names = np.asarray([str(n) for n in label_names], dtype=object)
    special = np.array([any(s in n for s in special_tokens) for n in names])
    keep = ~special[labels]
    m = flat_ner_metrics(list(names[labels[keep]]), list(names[pred[keep]]), special_tokens)
    out = {k: float(m[k]) for k in ("precision", "recall", "f1", "accuracy")}
    out["token_accuracy"] = float(np.mean(pred == labels))
    return out


def score_spans(data, features, logits: np.ndarray, *, version_2: bool, n_best_size: int = 20,
                max_answer_length: int = 30, null_threshold: float = 0.0):
    """Extractive QA: the answers the span logits ([windows, tokens, 2]) give to the questions of `data` (a
    `QAData`, windowed as `features`) and their official SQuAD figures (percent; v2.0 also HasAns/NoAns and the
    best null threshold). Returns (metrics, `data.qa.QAPredictions`)."""
    from xtremedistil_tf.data.qa import postprocess_qa
    from xtremedistil_tf.metrics.squad import squad_v1_metrics, squad_v2_metrics
    preds = postprocess_qa(data.examples, features, logits, n_best_size=n_best_size,
                           max_answer_length=max_answer_length, version_2=version_2, null_threshold=null_threshold)
    if version_2:
        # The best spans with their null odds, thresholded by the evaluation itself: the same plain figures as the
        # thresholded answers, and a best-threshold search that can also turn a null back into its span.
        scores = squad_v2_metrics(data.gold, preds.best_span, na_probs=preds.null_odds, na_prob_thresh=null_threshold)
    else:
        scores = squad_v1_metrics(data.gold, preds.text)
    return {k: float(v) for k, v in scores.items()}, preds


def main_metric(task: str, glue_task: str = "") -> str:
    """The key of the scores that picks the best checkpoint.

    Called with a task kind (as the trainers do: ``main_metric(kind, glue_task)``): f1 for NER and QA, pearson for
    regression, and for classification the GLUE task's main metric, or accuracy without a GLUE task. Called with
    a task name (``main_metric("cola")``): that task's main metric, as listed in the registry (mcc for CoLA/AX,
    pearson for STS-B, f1 for MRPC/QQP/NER, accuracy otherwise); an unknown name is a ValueError.
    """
    if task in registry.KINDS:
        if task in ("ner", "qa"):
            return "f1"
        if task == "regression":
            return "pearson"
        return registry.main_metric(glue_task) if glue_task else "accuracy"
    if glue_task:
        raise ValueError(f"main_metric: glue_task={glue_task!r} goes with a task kind {registry.KINDS}, "
                         f"not with the task name {task!r}")
    return registry.main_metric(task)
