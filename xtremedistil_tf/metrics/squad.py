"""SQuAD exact match and F1 exactly as the official scripts compute them (`evaluate-v1.1.py`, `evaluate-v2.0.py`).

Written by hand because no maintained library scores SQuAD offline (HF `evaluate` downloads its metric scripts).
The inputs are mappings rather than the dataset JSON: ``gold`` maps a question id to its gold answer texts (an empty
list: unanswerable, v2.0 only) and ``predictions`` a question id to the predicted text; ids of ``predictions`` that
are not in ``gold`` are ignored, as the scripts iterate over the dataset's questions. Scores are percentages.

Where the scripts disagree or are surprising, each function follows its own script:

* v1.1's F1 of an empty prediction against an empty gold answer is 0 (v2.0's is 1), and v1.1 keeps gold answers
  that normalize to "" while v2.0 drops them. v2.0 still counts such a question as answerable (HasAns), since it
  decides that from the raw answer list.
* A question without a prediction scores 0 in v1.1. evaluate-v2.0.py prints "Missing prediction" and then fails
  with a KeyError; squad_v2_metrics raises a ValueError instead.
* The best-threshold search walks the questions in na_prob order, tie order being the order of ``na_probs`` (of
  ``predictions`` when none are given), and may stop inside a group of equal na_probs, a cut no threshold makes.
  With all na_probs equal, best_* can therefore exceed the plain scores when unanswerable questions exist. It
  also decides whether an unanswerable question was answered from the raw prediction text, so "." counts as an
  answer there though it scores as "" everywhere else.
"""
from __future__ import annotations

import collections
import re
import string
from typing import Mapping, Sequence

from absl import logging

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop ASCII punctuation, then the articles a/an/the, then collapse whitespace (the scripts'
    order: "the.cat" becomes "thecat", whose article stays)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _overlap_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    """Bag-of-tokens F1; 0 without a common token (so also when either side is empty)."""
    num_same = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(pred_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match(prediction: str, gold: str) -> int:
    """1 if both normalize to the same text, else 0 (v2.0's compute_exact; v1.1's is the same)."""
    return int(normalize_answer(gold) == normalize_answer(prediction))


def f1(prediction: str, gold: str) -> float:
    """Token F1 of the normalized texts (v2.0's compute_f1): when either is empty, 1.0 if both are, else 0.0."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    return _overlap_f1(pred_tokens, gold_tokens)


def _f1_v1(prediction: str, gold: str) -> float:
    """v1.1's f1_score: as :func:`f1` but 0.0 when both texts normalize to empty."""
    return _overlap_f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


def _check_gold(gold: Mapping[str, Sequence[str]], name: str) -> None:
    if not gold:
        raise ValueError(f"{name}: no gold questions")
    for qid, answers in gold.items():
        if isinstance(answers, str) or not all(isinstance(a, str) for a in answers):
            raise TypeError(f"{name}: gold[{qid!r}] must be a list of answer texts, got {answers!r}")


def _prediction(predictions: Mapping[str, str], qid: str, name: str) -> str:
    text = predictions[qid]
    if not isinstance(text, str):
        raise TypeError(f"{name}: predictions[{qid!r}] must be a string, got {type(text).__name__} {text!r}")
    return text


def squad_v1_metrics(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> dict:
    """``{"exact_match", "f1", "total"}`` as evaluate-v1.1.py: per question the best score over its gold answers.

    A question without a prediction scores 0; their number is logged as a warning (the script prints each one).
    """
    name = "squad_v1_metrics"
    _check_gold(gold, name)
    unanswerable = [qid for qid, answers in gold.items() if not answers]
    if unanswerable:
        raise ValueError(
            f"{name}: {len(unanswerable)} question(s) have no gold answer (first: {unanswerable[0]!r}); SQuAD v1.1 "
            "has no unanswerable questions, score them with squad_v2_metrics"
        )
    exact_sum = f1_sum = 0
    missing = []
    for qid, answers in gold.items():
        if qid not in predictions:
            missing.append(qid)
            continue
        prediction = _prediction(predictions, qid, name)
        exact_sum += max(exact_match(prediction, a) for a in answers)
        f1_sum += max(_f1_v1(prediction, a) for a in answers)
    total = len(gold)
    if missing:
        logging.warning(
            "%s: %d of %d questions have no prediction and score 0, as evaluate-v1.1.py scores them (first: %s)",
            name, len(missing), total, ", ".join(repr(q) for q in missing[:5]),
        )
    return {"exact_match": 100.0 * exact_sum / total, "f1": 100.0 * f1_sum / total, "total": total}


def _apply_no_answer_threshold(scores: dict, na_probs: Mapping[str, float], has_answer: dict, thresh: float) -> dict:
    """A question whose na_prob exceeds `thresh` is predicted unanswerable: 1.0 if it is, else 0.0."""
    return {qid: float(not has_answer[qid]) if na_probs[qid] > thresh else s for qid, s in scores.items()}


def _eval_dict(exact_scores: dict, f1_scores: dict, qids: list[str], prefix: str = "") -> dict:
    total = len(qids)
    return {
        f"{prefix}exact": 100.0 * sum(exact_scores[q] for q in qids) / total,
        f"{prefix}f1": 100.0 * sum(f1_scores[q] for q in qids) / total,
        f"{prefix}total": total,
    }


def _find_best_thresh(predictions: Mapping[str, str], scores: dict, na_probs: Mapping[str, float],
                      has_answer: dict) -> tuple[float, float]:
    """evaluate-v2.0.py's find_best_thresh: the best score over cuts of the questions sorted by na_prob.

    Starts from "every question predicted unanswerable" (the NoAns questions right) and walks up the na_probs,
    turning one question at a time into answered: + its score if answerable, -1 if unanswerable and the raw
    prediction is non-empty. Returns (score in percent, the na_prob of the best cut, 0.0 if none beats the start).
    """
    cur_score = best_score = sum(1 for v in has_answer.values() if not v)
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda q: na_probs[q]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            cur_score += scores[qid]
        elif predictions[qid]:
            cur_score -= 1
        if cur_score > best_score:
            best_score, best_thresh = cur_score, float(na_probs[qid])
    return 100.0 * best_score / len(scores), best_thresh


def squad_v2_metrics(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str],
                     na_probs: Mapping[str, float] | None = None, na_prob_thresh: float = 1.0) -> dict:
    """Scores as evaluate-v2.0.py prints them, plus the best-threshold figures.

    Returns exact, f1, total, HasAns_exact/_f1/_total and NoAns_exact/_f1/_total (each group only when it has
    questions), best_exact, best_exact_thresh, best_f1, best_f1_thresh. The script computes the best_* keys only
    with an --na-prob-file; here they are always returned, from na_probs of 0.0 when none are given.

    Args:
        na_probs: question id -> the model's probability (or any score) that the question has no answer; must
            cover every gold question. None: 0.0 for all.
        na_prob_thresh: a question whose na_prob exceeds this is scored as predicted unanswerable.
    """
    name = "squad_v2_metrics"
    _check_gold(gold, name)
    missing = [qid for qid in gold if qid not in predictions]
    if missing:
        raise ValueError(
            f"{name}: {len(missing)} of {len(gold)} questions have no prediction (first: {missing[0]!r}); "
            "evaluate-v2.0.py cannot score those either: predict \"\" for no answer"
        )
    if na_probs is None:
        na_probs = {qid: 0.0 for qid in predictions}
    else:
        missing = [qid for qid in gold if qid not in na_probs]
        if missing:
            raise ValueError(
                f"{name}: {len(missing)} of {len(gold)} questions have no na_prob (first: {missing[0]!r})"
            )
    has_answer = {qid: bool(answers) for qid, answers in gold.items()}
    exact_raw, f1_raw = {}, {}
    for qid, answers in gold.items():
        prediction = _prediction(predictions, qid, name)
        # only "" is right for an unanswerable question; gold answers that normalize to "" are dropped
        answers = [a for a in answers if normalize_answer(a)] or [""]
        exact_raw[qid] = max(exact_match(prediction, a) for a in answers)
        f1_raw[qid] = max(f1(prediction, a) for a in answers)

    exact_thresh = _apply_no_answer_threshold(exact_raw, na_probs, has_answer, na_prob_thresh)
    f1_thresh = _apply_no_answer_threshold(f1_raw, na_probs, has_answer, na_prob_thresh)
    out = _eval_dict(exact_thresh, f1_thresh, list(gold))
    for prefix, wanted in (("HasAns_", True), ("NoAns_", False)):
        qids = [qid for qid, has in has_answer.items() if has is wanted]
        if qids:
            out.update(_eval_dict(exact_thresh, f1_thresh, qids, prefix))
    out["best_exact"], out["best_exact_thresh"] = _find_best_thresh(predictions, exact_raw, na_probs, has_answer)
    out["best_f1"], out["best_f1_thresh"] = _find_best_thresh(predictions, f1_raw, na_probs, has_answer)
    return out
