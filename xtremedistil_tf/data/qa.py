"""Extractive question answering: SQuAD examples as model windows, and the model's span logits back to answers.

Windows follow transformers' question-answering examples: question + context in one sequence, the context cut
into windows of `max_seq_length` tokens that overlap by `doc_stride` tokens (the tokenizer's `stride`), the
question cut to `max_query_length` tokens, and each context token's character span kept so an answer is read
straight out of the original context. A window that does not hold the whole answer (and every window of an
unanswerable question) is labelled with the [CLS] position, the "no answer" of SQuAD v2.0.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from absl import logging

from xtremedistil_tf.errors import ConfigError

NO_ANSWER = 0  # the [CLS] position


@dataclasses.dataclass
class QAFeatures:
    """The windows of a list of QA examples.

    arrays: `input_ids`, `attention_mask`, `token_type_ids` [N, L] int32, and with answers `labels` [N, 2]
      (start, end token of the answer in the window; NO_ANSWER for both when the window does not hold it).
    example_index: [N] the example each window comes from.
    offsets: [N, L, 2] the character span of each context token in its example's context; -1 for the question,
      special tokens and padding (positions an answer can never take).
    stats: counts for the log and metrics.json.
    """
    arrays: dict[str, np.ndarray]
    example_index: np.ndarray
    offsets: np.ndarray
    stats: dict

    def __len__(self) -> int:
        return len(self.example_index)


def check_window_flags(max_seq_length: int, doc_stride: int, max_query_length: int) -> None:
    """ConfigError unless a window has room for the question, 3 special tokens and some context, and the windows'
    overlap (`doc_stride`) is shorter than their context part."""
    context = max_seq_length - max_query_length - 3
    if max_query_length < 1 or context < 1:
        raise ConfigError(f"--seq_len={max_seq_length} leaves no room for the context after a question of up "
                          f"to --max_query_length={max_query_length} tokens and 3 special tokens")
    if not 0 <= doc_stride < context:
        raise ConfigError(f"--doc_stride={doc_stride} must be at least 0 and less than the {context} context tokens "
                          f"a window holds (seq_len - max_query_length - 3)")


def _cut_questions(tokenizer, questions: list[str], max_query_length: int) -> tuple[list[str], int]:
    """Questions cut after their `max_query_length`-th token (at its character end), and how many were cut."""
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out, cut = [], 0
    for q, offsets in zip(questions, enc["offset_mapping"]):
        if len(offsets) > max_query_length:
            q = q[:offsets[max_query_length - 1][1]]
            cut += 1
        out.append(q)
    return out, cut


def featurize_qa(tokenizer, examples: Sequence, *, max_seq_length: int = 384, doc_stride: int = 128,
                 max_query_length: int = 64, with_labels: bool = True, name: str = "") -> QAFeatures:
    """The windows of `examples` (`QAExample` rows), padded to `max_seq_length`; see the module docstring.

    Args:
      with_labels: add `labels` from each example's first answer (training and validation losses).
      name: the split's name, for the log.
    """
    check_window_flags(max_seq_length, doc_stride, max_query_length)
    if getattr(tokenizer, "padding_side", "right") != "right":
        raise ConfigError("question answering needs a tokenizer that pads on the right (question first, context "
                          "second)")
    questions, cut = _cut_questions(tokenizer, [ex.question.lstrip() for ex in examples], max_query_length)
    enc = tokenizer(questions, [ex.context for ex in examples], truncation="only_second", max_length=max_seq_length,
                    stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding="max_length")
    n = len(enc["input_ids"])
    example_index = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
    offsets = np.full((n, max_seq_length, 2), -1, dtype=np.int32)
    labels = np.full((n, 2), NO_ANSWER, dtype=np.int32)
    for i in range(n):
        seq = np.array([s if s is not None else -1 for s in enc.sequence_ids(i)])
        context = seq == 1
        offsets[i, context] = np.asarray(enc["offset_mapping"][i], dtype=np.int32)[context]
    answerable = [bool(ex.answers) and not ex.is_impossible for ex in examples]
    found = np.zeros(len(examples), dtype=bool)
    inexact = 0
    if with_labels:
        for i in range(n):
            ex = examples[example_index[i]]
            if not answerable[example_index[i]]:
                continue
            text, start_char = ex.answers[0]
            end_char = start_char + len(text)
            span = _token_span(offsets[i], start_char, end_char)
            if span is None:
                continue
            labels[i] = span
            if not found[example_index[i]]:
                found[example_index[i]] = True
                got = ex.context[offsets[i, span[0], 0]:offsets[i, span[1], 1]]
                inexact += got != text
    arrays = {"input_ids": np.asarray(enc["input_ids"], dtype=np.int32),
              "attention_mask": np.asarray(enc["attention_mask"], dtype=np.int32),
              "token_type_ids": np.asarray(enc["token_type_ids"], dtype=np.int32) if "token_type_ids" in enc
              else np.zeros((n, max_seq_length), dtype=np.int32)}
    if with_labels:
        arrays["labels"] = labels
    windows = np.bincount(example_index, minlength=len(examples)) if len(examples) else np.zeros(0, np.int64)
    stats = {"examples": len(examples), "windows": n, "max_windows_per_example": int(windows.max(initial=0)),
             "questions_cut": cut, "answerable": int(sum(answerable))}
    if with_labels:
        stats["answers_in_no_window"] = int(sum(answerable)) - int(found.sum())
        stats["answers_not_on_token_boundaries"] = int(inexact)
    logging.info("%s: %d question(s) -> %d window(s) of %d tokens (stride %d; at most %d per question); %d question(s) "
                 "cut to %d tokens%s", name or "QA", len(examples), n, max_seq_length, doc_stride,
                 stats["max_windows_per_example"], cut, max_query_length,
                 f"; {stats['answers_in_no_window']} answer(s) in no window (trained as no-answer), "
                 f"{inexact} answer(s) whose tokens span more than the answer text" if with_labels else "")
    return QAFeatures(arrays, example_index, offsets, stats)


def _token_span(offsets: np.ndarray, start_char: int, end_char: int) -> tuple[int, int] | None:
    """The first and last token of a window covering characters [start_char, end_char), or None when the window's
    context does not hold the whole span."""
    context = np.flatnonzero(offsets[:, 0] >= 0)
    if not len(context):
        return None
    first, last = context[0], context[-1]
    if offsets[first, 0] > start_char or offsets[last, 1] < end_char:
        return None
    starts = context[offsets[context, 0] <= start_char]
    ends = context[offsets[context, 1] >= end_char]
    return int(starts[-1]), int(ends[0])


@dataclasses.dataclass
class QAPredictions:
    """Answers per question id: the best span's text, its score, and (v2.0) the null score minus the best span
    score, the official `null_odds.json` (higher: more likely unanswerable)."""
    text: dict[str, str]
    best_span: dict[str, str]
    null_odds: dict[str, float]


def postprocess_qa(examples: Sequence, features: QAFeatures, logits: np.ndarray, *, n_best_size: int = 20,
                   max_answer_length: int = 30, version_2: bool = False,
                   null_threshold: float = 0.0) -> QAPredictions:
    """The answer to each example from its windows' start/end logits ([N, L, 2]).

    In every window the `n_best_size` best starts and ends over context tokens are paired (end not before start,
    at most `max_answer_length` tokens); the pair with the highest start + end logit over all of the example's
    windows gives the answer, read from the context by character offsets. With `version_2`, the null score is the
    lowest [CLS] start + end over the windows, and the answer is "" when null score - best span score exceeds
    `null_threshold`.
    """
    best: dict[int, tuple[float, str]] = {}
    null: dict[int, float] = {}
    for f in range(len(features)):
        e = int(features.example_index[f])
        start, end = logits[f, :, 0], logits[f, :, 1]
        null[e] = min(null.get(e, np.inf), float(start[NO_ANSWER] + end[NO_ANSWER]))
        context = features.offsets[f, :, 0] >= 0
        if not context.any():
            continue
        cand = np.flatnonzero(context)
        k = min(n_best_size, len(cand))
        s_idx = cand[np.argsort(-start[cand], kind="stable")[:k]]
        e_idx = cand[np.argsort(-end[cand], kind="stable")[:k]]
        length = e_idx[None, :] - s_idx[:, None] + 1
        scores = np.where((length >= 1) & (length <= max_answer_length),
                          start[s_idx][:, None] + end[e_idx][None, :], -np.inf)
        i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if not np.isfinite(scores[i, j]):
            continue
        score = float(scores[i, j])
        if e not in best or score > best[e][0]:
            ctx = examples[e].context
            best[e] = (score, ctx[features.offsets[f, s_idx[i], 0]:features.offsets[f, e_idx[j], 1]])
    text, span, odds = {}, {}, {}
    for e, ex in enumerate(examples):
        score, answer = best.get(e, (-np.inf, ""))
        span[ex.qid] = answer
        if version_2:
            diff = null.get(e, 0.0) - score if np.isfinite(score) else np.inf
            odds[ex.qid] = float(diff) if np.isfinite(diff) else 1e9
            text[ex.qid] = "" if diff > null_threshold else answer
        else:
            text[ex.qid] = answer
    return QAPredictions(text, span, odds)
