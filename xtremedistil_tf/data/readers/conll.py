"""CoNLL files: one token a line (``word POS [chunk] tag``), a blank line between sentences."""
from __future__ import annotations

import os
import re
from typing import Sequence

from xtremedistil_tf.data.readers.common import (
    Example, Skips, TaskData, iter_lines, log_label_counts, show_labels, sorted_label_names, warn_rare_labels,
)
from xtremedistil_tf.errors import DataError

_CONLL_SPLIT = re.compile(r"[ \t]+")


def read_conll(path: str, *, label_names: Sequence[str] | None = None, skip_bad_lines: bool = False,
               train: bool | None = None) -> TaskData:
    """Reads a CoNLL file: one token a line, ``word POS [chunk] tag`` (space or tab separated; the tag is the
    last column), a blank line between sentences; ``-DOCSTART-`` lines are skipped (and counted). Every token
    line must have as many columns as the first one. Labels: ``label_names`` when given (a tag outside it is an
    error), else the sorted tag set. Tags are not checked against a tagging scheme (IOB1, IOB2/BIO, IOBES, ...
    all load). ``train``: the file is a training split (default: when ``label_names`` is None); a tag of a
    training file that occurs fewer than 5 times is logged as a warning.
    """
    path = os.fspath(path)
    if train is None:
        train = label_names is None
    skips = Skips(path)
    sentences: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    words: list[str] = []
    tags: list[str] = []
    n_cols = None
    first_line = None

    def flush() -> None:
        if words:
            sentences.append((tuple(words), tuple(tags)))
            words.clear()
            tags.clear()

    for lineno, text in iter_lines(path):
        stripped = text.strip(" \t")
        if not stripped:
            flush()
            continue
        fields = _CONLL_SPLIT.split(stripped)
        if fields[0] == "-DOCSTART-":
            skips.docstart += 1
            flush()
            continue
        if len(fields) < 2:
            skips.bad_line(skip_bad_lines, lineno,
                           f"expected 'word POS [chunk] tag' (at least 2 space-separated columns), found {len(fields)}")
            continue
        if n_cols is None:
            n_cols, first_line = len(fields), lineno
        elif len(fields) != n_cols:
            skips.bad_line(skip_bad_lines, lineno,
                           f"expected {n_cols} columns like line {first_line} ('word POS [chunk] tag'), found {len(fields)}")
            continue
        words.append(fields[0])
        tags.append(fields[-1])
    flush()
    skips.log()
    if not sentences:
        raise DataError(path, None, "empty file: no sentences (expected 'word POS [chunk] tag' lines)")
    names = list(label_names) if label_names is not None else sorted_label_names(t for _, ts in sentences for t in ts)
    index = {n: i for i, n in enumerate(names)}
    examples = []
    # Line numbers are recomputed only on error, to keep the common path cheap.
    for i, (ws, ts) in enumerate(sentences):
        try:
            label = tuple(index[t] for t in ts)
        except KeyError:
            bad = next(t for t in ts if t not in index)
            raise DataError(path, _conll_line_of(path, i, bad),
                            f"tag {bad!r} is not in the label set ({show_labels(names)})") from None
        examples.append(Example(ws, None, label, i))
    log_label_counts(path, "ner", names, examples)
    if train:
        warn_rare_labels(path, "ner", names, examples)
    return TaskData(examples, names, "ner", path, False)


def _conll_line_of(path: str, sentence: int, tag: str) -> int | None:
    current, in_sentence = -1, False
    for lineno, text in iter_lines(path):
        fields = _CONLL_SPLIT.split(text.strip(" \t")) if text.strip(" \t") else []
        if not fields or fields[0] == "-DOCSTART-":
            in_sentence = False
            continue
        if not in_sentence:
            current += 1
            in_sentence = True
        if current == sentence and len(fields) >= 2 and fields[-1] == tag:
            return lineno
    return None
