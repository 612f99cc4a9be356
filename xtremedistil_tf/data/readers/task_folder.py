"""The original release's task folders: ``train.tsv``/``dev.tsv``/``test.tsv`` (no header), ``labels.tsv`` and
the unlabelled transfer file."""
from __future__ import annotations

import os
from typing import Iterator, Sequence

from xtremedistil_tf import fs
from xtremedistil_tf.data.readers.common import (
    Example,
    MissingFileError,
    Skips,
    TaskData,
    check_kind,
    iter_lines,
    label_id,
    labels_mix_kinds,
    log_label_counts,
    mixed_label_lines,
    parse_float,
    sorted_label_names,
    warn_rare_labels,
)
from xtremedistil_tf.errors import DataError


def read_labels_file(path: str) -> list[str]:
    """Reads ``labels.tsv``: one label a line; blank lines are skipped (as the original), duplicates are errors."""
    path = os.fspath(path)
    names: list[str] = []
    seen: dict[str, int] = {}
    skips = Skips(path)
    for lineno, text in iter_lines(path):
        name = text.strip()
        if not name:
            skips.blank += 1
            continue
        if name in seen:
            raise DataError(path, lineno, f"duplicate label {name!r} (first on line {seen[name]})")
        seen[name] = lineno
        names.append(name)
    if not names:
        raise DataError(path, None, "empty file: expected one label a line")
    skips.log()
    return names


def _split_words(text: str) -> tuple[str, ...]:
    # Split on spaces only (as the original's split(" ")), dropping empty words from repeated spaces.
    return tuple(w for w in text.split(" ") if w)


def _expected_columns(kind: str, pairwise: bool, has_labels: bool) -> str:
    if kind == "ner":
        return "words<TAB>tags (space-separated, as many tags as words)" if has_labels else "words"
    cols = "text_a<TAB>text_b" if pairwise else "text"
    return cols + ("<TAB>label" if has_labels else "")


def _read_task_rows(path: str, kind: str, pairwise: bool, has_labels: bool, skip_bad_lines: bool,
                    accept_labels: bool = False) -> Iterator[tuple[int, str | tuple[str, ...], str | None,
                                                                   str | tuple[str, ...] | None]]:
    """Yields (line, text_a, text_b, raw label) of a task-format file; raw label is None when unlabelled."""
    n_text = 2 if pairwise else 1
    n_cols = n_text + (1 if has_labels else 0)
    allowed = {n_cols} | ({n_text + 1} if accept_labels and not has_labels else set())
    skips = Skips(path)
    count = 0
    for lineno, text in iter_lines(path):
        if not text.strip():
            skips.blank += 1
            continue
        fields = text.split("\t")
        if len(fields) not in allowed:
            skips.bad_line(skip_bad_lines, lineno,
                           f"expected {n_cols} tab-separated column(s) "
                           f"({_expected_columns(kind, pairwise, has_labels)}), found {len(fields)}")
            continue
        if len(fields) != n_cols:
            skips.ignored_labels += 1
        if kind == "ner":
            words = _split_words(fields[0])
            if not words:
                skips.bad_line(skip_bad_lines, lineno, "expected at least one word, found none")
                continue
            raw_label = None
            if has_labels:
                tags = _split_words(fields[1])
                if len(tags) != len(words):
                    skips.bad_line(skip_bad_lines, lineno,
                                   f"NER line has {len(words)} word(s) but {len(tags)} tag(s); expected one tag a word")
                    continue
                raw_label = tags
            count += 1
            yield lineno, words, None, raw_label
        else:
            raw_label = fields[n_text].strip() if has_labels else None
            if has_labels and not raw_label:
                skips.bad_line(skip_bad_lines, lineno, "empty label column")
                continue
            count += 1
            yield lineno, fields[0], (fields[1] if pairwise else None), raw_label
    skips.log()
    if count == 0:
        raise DataError(path, None,
                        f"empty file: no examples (expected lines of {_expected_columns(kind, pairwise, has_labels)})")


def read_task_file(path: str, *, kind: str, pairwise: bool, label_names: Sequence[str] | None,
                   has_labels: bool = True, skip_bad_lines: bool = False, train: bool | None = None) -> TaskData:
    """Reads one file of the original release's task-folder format (no header).

    Lines: ``text<TAB>label``; ``text_a<TAB>text_b<TAB>label`` when ``pairwise``; NER ``words<TAB>tags``
    (space-separated, same count). Unlabelled (``has_labels=False``): ``text``, ``text_a<TAB>text_b`` or
    ``words``. Classification labels are looked up in ``label_names`` (inferred from this file, sorted, when
    None, see the package docstring); regression labels are floats; NER tags are looked up in ``label_names``
    (inferred, sorted, when None). ``skip_bad_lines=True`` skips and counts malformed lines instead of raising.

    ``train``: the file is a training split (default: when its label set is inferred from it, ``label_names``
    None). A training file's classification labels must not mix numeric-looking labels with non-numeric ones
    (a DataError at the first line of the minority kind; not checked when ``label_names`` itself mixes the two,
    as a labels.tsv may declare), and a label (NER: tag) seen fewer than 5 times is logged as a warning.
    """
    path = os.fspath(path)
    check_kind(kind, pairwise)
    if train is None:
        train = label_names is None
    rows = list(_read_task_rows(path, kind, pairwise, has_labels, skip_bad_lines))
    skips = Skips(path)
    if (train and kind == "classification" and has_labels
            and not (label_names is not None and labels_mix_kinds(label_names))):
        odd = mixed_label_lines([(r[0], r[3]) for r in rows])
        for lineno, message in odd:
            skips.bad_line(skip_bad_lines, lineno, message)
        if odd:
            odd_lines = {lineno for lineno, _ in odd}
            rows = [r for r in rows if r[0] not in odd_lines]
    names: list[str] | None = None
    if kind != "regression":
        if label_names is not None:
            names = list(label_names)
        elif has_labels:
            if kind == "ner":
                names = sorted_label_names(t for r in rows for t in r[3])
            else:
                names = sorted_label_names(r[3] for r in rows)
    index = {n: i for i, n in enumerate(names)} if names is not None else {}
    examples = []
    for lineno, a, b, raw in rows:
        label: int | float | tuple[int, ...] | None = None
        if raw is not None:
            try:
                if kind == "ner":
                    label = tuple(label_id(path, lineno, t, index, names) for t in raw)
                elif kind == "regression":
                    label = parse_float(path, lineno, raw)
                else:
                    label = label_id(path, lineno, raw, index, names)
            except DataError as e:
                skips.bad_line(skip_bad_lines, lineno, str(e)[len(f"{path}:{lineno}: "):])
                continue
        examples.append(Example(a, b, label, len(examples)))
    skips.log()
    if not examples:
        raise DataError(path, None, "no examples left after skipping bad lines")
    log_label_counts(path, kind, names, examples)
    if train and has_labels:
        warn_rare_labels(path, kind, names, examples)
    return TaskData(examples, names, kind, path, pairwise)


def read_task_folder(task_dir: str, *, do_NER: bool = False, do_pairwise: bool = False,
                     skip_bad_lines: bool = False) -> dict[str, TaskData]:
    """Reads ``train.tsv`` (required), ``dev.tsv`` and ``test.tsv`` (when present) of an original-release folder.

    Labels: ``labels.tsv`` when present, else (classification) the sorted distinct train labels (numeric sort
    when all are integers); NER requires ``labels.tsv``. The original release used ``int(label)`` as the class
    id and ``len(set(train labels))`` classes, ignoring labels.tsv for classification: for labels ``0..K-1``
    (its only working case) this gives the same ids. Blank lines are skipped (as the original) and counted.
    train.tsv's classification labels must not mix numeric and non-numeric labels; a dev/test label the train
    split lacks is an error; a train label (tag) seen fewer than 5 times is logged as a warning.
    The transfer file is not read here: see :func:`iter_transfer_file`.
    """
    task_dir = os.fspath(task_dir)
    if not fs.isdir(task_dir):
        raise MissingFileError(task_dir, None, "task folder not found")
    kind = "ner" if do_NER else "classification"
    labels_path = fs.join(task_dir, "labels.tsv")
    label_names = None
    if fs.exists(labels_path):
        label_names = read_labels_file(labels_path)
    elif do_NER:
        raise MissingFileError(labels_path, None, "file not found: NER task folders need labels.tsv (one tag a line)")
    train_path = fs.join(task_dir, "train.tsv")
    if not fs.exists(train_path):
        raise MissingFileError(train_path, None, "file not found: a task folder needs train.tsv")
    out = {"train": read_task_file(train_path, kind=kind, pairwise=do_pairwise, label_names=label_names,
                                   skip_bad_lines=skip_bad_lines, train=True)}
    label_names = out["train"].label_names
    for split in ("dev", "test"):
        p = fs.join(task_dir, f"{split}.tsv")
        if fs.exists(p):
            out[split] = read_task_file(p, kind=kind, pairwise=do_pairwise, label_names=label_names,
                                        skip_bad_lines=skip_bad_lines, train=False)
    return out


def iter_transfer_file(path: str, *, kind: str = "classification", pairwise: bool = False,
                       skip_bad_lines: bool = False) -> Iterator[Example]:
    """Streams the unlabelled examples of a transfer file, in constant memory.

    Lines: ``text``, ``text_a<TAB>text_b`` (pairwise) or ``words`` (NER). A labelled file (one more column) is
    accepted too; its labels are ignored and counted in the log. ``Example.idx`` is the example's position.
    """
    path = os.fspath(path)
    check_kind(kind, pairwise)
    for pos, (_, a, b, _) in enumerate(
            _read_task_rows(path, kind, pairwise, False, skip_bad_lines, accept_labels=True)):
        yield Example(a, b, None, pos)
