"""SQuAD v1.1 / v2.0 (extractive question answering): the official JSON files and TFDS ``squad/v1.1``,
``squad/v2.0``.

Both readers return a :class:`QAData` of :class:`QAExample` rows, one a question, in the file's order. The checks
are the same for both sources:

* every field is present with its type (``title``, ``is_impossible`` and ``plausible_answers`` may be absent, as
  TFDS also reads them; ``title`` defaults to ``""``, ``is_impossible`` to false);
* question ids are unique;
* every answer (and plausible answer) is non-empty and sits at its offset: ``context[start:start + len(text)] ==
  text``, offsets counted in characters (code points) as Python and the official files count them;
* an unanswerable question (``is_impossible`` true) has no answers;
* in a labelled split (one where some question has an answer or is marked unanswerable: train, dev) every other
  question has at least one answer: without one the official v1.1 evaluation cannot score it and the v2.0 one would
  silently score it as unanswerable. A split where no question has answers is read as unlabelled
  (``QAData.has_answers`` is false).

The answer-offset rule is exact, and a mismatch is an error by default. Both real files checked here have none
(dev-v1.1: 34,726 answers; the first 10 articles of train-v2.0: 4,371 answers and 348 plausible answers); the
misalignments reported for SQuAD came from readers that stripped the contexts' whitespace (TFDS before its
squad 3.0.0, Hugging Face datasets before its fix), which these readers never do. Other SQuAD-like datasets do
carry wrong offsets, so ``skip_bad_answers=True`` drops such answers instead: each is counted and the first ones
are logged with a warning, and a question left without any answer is dropped (counted) as well, never kept as
unanswerable. Type errors, duplicate ids and the rules above are never skipped.

Questions are never rewritten: a question's text, the context and the answers are kept as in the data, and a
dev question's several answers are all kept in order, duplicates included (the metric takes the best of them).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from absl import logging

from xtremedistil_tf.data.readers.common import _BOM, _open_binary
from xtremedistil_tf.errors import DataError

Answers = tuple[tuple[str, int], ...]

# A question id in the raw text: `"id": "<JSON string>"`; only searched when an error needs a line number.
_ID_RE = re.compile(r'"id"\s*:\s*"((?:[^"\\]|\\.)*)"')
_SHOWN_BAD = 5  # bad answers named in the skip warning


@dataclass(frozen=True)
class QAExample:
    """One question: its id, text, paragraph (``context``) and gold answers as ``(text, answer_start)`` with the
    start a character offset into ``context`` (``()`` for an unanswerable question or an unlabelled split).
    ``plausible_answers``: SQuAD v2.0's wrong-but-plausible spans of an unanswerable question."""

    qid: str
    question: str
    context: str
    answers: Answers
    is_impossible: bool = False
    plausible_answers: Answers = ()
    title: str = ""


@dataclass
class QAData:
    """The questions of one split.

    path: the file path, or ``"tfds:<name>/<split>"``. version: ``"1.1"`` or ``"2.0"`` (v2.0 when the file says
    so, the TFDS dataset has v2.0's features, or any question is unanswerable).
    """

    examples: list[QAExample]
    path: str
    version: str

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def has_answers(self) -> bool:
        """True when the split has questions and every answerable one has an answer (train and dev are scored)."""
        return bool(self.examples) and all(e.answers for e in self.examples if not e.is_impossible)

    @property
    def gold(self) -> dict[str, list[str]]:
        """Question id -> gold answer texts in order (``[]`` for an unanswerable question): the metric's input.
        Meaningful only when :attr:`has_answers`."""
        return {e.qid: [t for t, _ in e.answers] for e in self.examples}


# ---------------------------------------------------------------------------------------------------------------
# What both readers share
# ---------------------------------------------------------------------------------------------------------------


def _clip(text: str, limit: int = 80) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


class _Checker:
    """Checks questions one by one (ids, answers at their offsets, unanswerable without answers), counts what
    ``skip_bad_answers`` drops, then checks the split as a whole and logs its counts."""

    def __init__(self, where: str, skip_bad_answers: bool):
        self.where, self.skip = where, skip_bad_answers
        self.examples: list[QAExample] = []
        self.seen: dict[str, int | None] = {}
        self.lines: dict[str, int | None] = {}  # line of each kept question's id, for the split-level errors
        self.bad_answers: list[str] = []
        self.dropped_questions = 0

    def _answers(self, line: int | None, qid: str, context: str, raw: list[tuple[str, int]], what: str) -> Answers:
        kept = []
        for text, start in raw:
            if not text:
                problem = f"question {qid!r}: empty {what} text at answer_start {start}"
            elif start < 0 or start + len(text) > len(context):
                problem = (f"question {qid!r}: {what} {_clip(text)} at answer_start {start} runs outside the "
                           f"context ({len(context)} characters)")
            elif context[start:start + len(text)] != text:
                found = context.find(text)
                problem = (f"question {qid!r}: {what} {_clip(text)} is not at answer_start {start}; the context "
                           f"holds {_clip(context[start:start + len(text)])} there"
                           + (f" (the text first occurs at {found})" if found >= 0 else " (the text is not in the "
                              "context)"))
            else:
                kept.append((text, start))
                continue
            if not self.skip:
                raise DataError(self.where, line, problem + "; skip_bad_answers=True drops such answers")
            self.bad_answers.append(problem if line is None else f"line {line}: {problem}")
        return tuple(kept)

    def add(self, line: int | None, qid: str, question: str, context: str, answers: list[tuple[str, int]],
            is_impossible: bool, plausible: list[tuple[str, int]], title: str) -> None:
        if qid in self.seen:
            first = self.seen[qid]
            raise DataError(self.where, line, f"duplicate question id {qid!r}"
                            + (f" (first at line {first})" if first is not None else ""))
        self.seen[qid] = line
        if is_impossible and answers:
            raise DataError(self.where, line, f"question {qid!r} is unanswerable (is_impossible true) but has "
                                              f"{len(answers)} answer(s); expected none")
        kept = self._answers(line, qid, context, answers, "answer")
        kept_plausible = self._answers(line, qid, context, plausible, "plausible answer")
        if answers and not kept:
            self.dropped_questions += 1
            return
        self.lines[qid] = line
        self.examples.append(QAExample(qid, question, context, kept, is_impossible, kept_plausible, title))

    def finish(self, version: str, layout: str) -> QAData:
        """The split: checks that it is not empty and that a labelled split labels every question, logs."""
        if self.bad_answers:
            logging.warning("%s: dropped %d answer(s) not at their answer_start (skip_bad_answers=True) and %d "
                            "question(s) left without an answer; first: %s", self.where, len(self.bad_answers),
                            self.dropped_questions, "; ".join(self.bad_answers[:_SHOWN_BAD]))
        if not self.examples:
            raise DataError(self.where, None, "no questions")
        impossible = sum(e.is_impossible for e in self.examples)
        if impossible:
            version = "2.0"
        if impossible or any(e.answers for e in self.examples):
            for e in self.examples:
                if not e.answers and not e.is_impossible:
                    why = ("answerable (is_impossible false)" if version == "2.0"
                           else "a SQuAD v1.1 question (every one is answerable)")
                    raise DataError(self.where, self.lines[e.qid],
                                    f"question {e.qid!r} has no answers, yet it is {why} and other questions of "
                                    f"the split have answers; expected at least one answer")
        logging.info("%s: SQuAD v%s, %s, %d questions (%d unanswerable), %d answers", self.where, version, layout,
                     len(self.examples), impossible, sum(len(e.answers) for e in self.examples))
        return QAData(self.examples, self.where, version)


# ---------------------------------------------------------------------------------------------------------------
# The official JSON files
# ---------------------------------------------------------------------------------------------------------------

_TYPE_NAMES = {str: "a string", list: "a list", dict: "an object", int: "an integer", bool: "true or false"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


class _IdLines:
    """The 1-based line of each question's ``"id"`` in the raw text, found by one regex pass on first use."""

    def __init__(self, text: str):
        self.text = text
        self.index: dict[str, list[int]] | None = None

    def line(self, qid: str, occurrence: int = 0) -> int | None:
        if self.index is None:
            self.index = {}
            line, pos = 1, 0
            for m in _ID_RE.finditer(self.text):
                line += self.text.count("\n", pos, m.start())
                pos = m.start()
                raw = m.group(1)
                try:
                    key = json.loads(f'"{raw}"') if "\\" in raw else raw
                except ValueError:
                    continue
                self.index.setdefault(key, []).append(line)
        lines = self.index.get(qid, [])
        return lines[occurrence] if occurrence < len(lines) else None


def _load_json(path: str) -> tuple[Any, str]:
    with _open_binary(path) as f:
        raw = f.read()
    if raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(path, line, f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at column {column}); data files "
                                    f"must be UTF-8") from None
    try:
        return json.loads(text), text
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise DataError(path, None, "invalid JSON: nested too deeply") from None


def read_squad_json(path: str, *, skip_bad_answers: bool = False) -> QAData:
    """Reads an official SQuAD v1.1 or v2.0 JSON file (``{"version", "data": [{"title", "paragraphs":
    [{"context", "qas": [{"id", "question", "answers": [{"text", "answer_start"}], "is_impossible",
    "plausible_answers"}]}]}]}``) into a QAData; see the module docstring for the checks.

    The file is read as strict UTF-8 (a byte order mark removed). Errors are DataErrors naming the file and, for a
    question, the 1-based line of its ``"id"`` and the id; an article or paragraph without ids is named by its
    position (and title). ``version`` is "2.0" when the file's ``version`` says 2.x or any question is
    unanswerable, else "1.1". ``skip_bad_answers``: drop (count and log) answers that are not at their
    ``answer_start`` instead of raising.
    """
    path = os.fspath(path)
    doc, text = _load_json(path)
    id_lines = _IdLines(text)
    check = _Checker(path, skip_bad_answers)

    def need(obj: dict, key: str, kind: type, where: str, line: int | None = None, default: Any = ...) -> Any:
        if key not in obj:
            if default is not ...:
                return default
            raise DataError(path, line, f"{where}: missing field {key!r} (expected {_TYPE_NAMES[kind]})")
        value = obj[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise DataError(path, line, f"{where}: field {key!r} must be {_TYPE_NAMES[kind]}, found "
                                        f"{_json_type(value)}")
        return value

    if not isinstance(doc, dict):
        raise DataError(path, 1, f"expected a JSON object with 'version' and 'data', found {_json_type(doc)}")
    declared = doc.get("version")
    if declared is not None and not isinstance(declared, str):
        raise DataError(path, None, f"field 'version' must be a string, found {_json_type(declared)}")
    version = "2.0" if declared is not None and declared.lower().lstrip("v").startswith("2") else "1.1"
    articles = need(doc, "data", list, "the file")
    paragraphs = 0
    for a, article in enumerate(articles):
        if not isinstance(article, dict):
            raise DataError(path, None, f"data[{a}]: expected an article object, found {_json_type(article)}")
        title = need(article, "title", str, f"data[{a}]", default="")
        where_a = f"data[{a}] (title {title!r})" if title else f"data[{a}]"
        for p, paragraph in enumerate(need(article, "paragraphs", list, where_a)):
            where_p = f"{where_a} paragraphs[{p}]"
            if not isinstance(paragraph, dict):
                raise DataError(path, None, f"{where_p}: expected a paragraph object, found "
                                            f"{_json_type(paragraph)}")
            paragraphs += 1
            context = need(paragraph, "context", str, where_p)
            for q, qa in enumerate(need(paragraph, "qas", list, where_p)):
                if not isinstance(qa, dict):
                    raise DataError(path, None, f"{where_p} qas[{q}]: expected a question object, found "
                                                f"{_json_type(qa)}")
                qid = need(qa, "id", str, f"{where_p} qas[{q}]")
                line = id_lines.line(qid, 1 if qid in check.seen else 0)
                where_q = f"question {qid!r}"
                question = need(qa, "question", str, where_q, line)
                is_impossible = need(qa, "is_impossible", bool, where_q, line, default=False)
                lists = {}
                for key in ("answers", "plausible_answers"):
                    items = need(qa, key, list, where_q, line, default=... if key == "answers" else [])
                    pairs = []
                    for k, answer in enumerate(items):
                        where_k = f"{where_q} {key}[{k}]"
                        if not isinstance(answer, dict):
                            raise DataError(path, line, f"{where_k}: expected an object with 'text' and "
                                                        f"'answer_start', found {_json_type(answer)}")
                        pairs.append((need(answer, "text", str, where_k, line),
                                      need(answer, "answer_start", int, where_k, line)))
                    lists[key] = pairs
                check.add(line, qid, question, context, lists["answers"], is_impossible,
                          lists["plausible_answers"], title)
    return check.finish(version, f"{len(articles)} articles, {paragraphs} paragraphs")


# ---------------------------------------------------------------------------------------------------------------
# TFDS
# ---------------------------------------------------------------------------------------------------------------

_TFDS_SPLITS = {"dev": "validation"}
_TFDS_REQUIRED = ("id", "question", "context", "answers")


def _tfds_split(split: str) -> str:
    """TFDS' name of our split: "dev" (and its slices, "dev[:10%]") is "validation"."""
    for ours, theirs in _TFDS_SPLITS.items():
        if split == ours or split.startswith(ours + "["):
            return theirs + split[len(ours):]
    return split


def read_tfds_squad(name: str, split: str, *, data_dir: str | None = None, download: bool = True,
                    skip_bad_answers: bool = False) -> QAData:
    """Reads TFDS ``squad/v1.1`` or ``squad/v2.0`` (or another dataset with SQuAD's features) into a QAData.

    ``split``: "train", "validation" or "dev" (slices such as "train[:1%]" kept). Features: ``id``, ``title``,
    ``context``, ``question``, ``answers`` {``text``, ``answer_start``}; ``squad/v2.0`` adds ``is_impossible`` and
    ``plausible_answers`` {``text``, ``answer_start``}, and is read as version "2.0" (as is any dataset with an
    ``is_impossible`` feature). The checks are those of :func:`read_squad_json`, plus as many answer texts as
    starts; in errors the "line" is the 1-based example number. TFDS counts no articles or paragraphs: the log
    gives the distinct titles and contexts. ``QAData.path`` is ``"tfds:<name>/<split>"``.
    """
    import tensorflow_datasets as tfds

    tfds_split = _tfds_split(split)
    where = f"tfds:{name}/{tfds_split}"
    try:
        ds, info = tfds.load(name, split=tfds_split, data_dir=data_dir, download=download, with_info=True)
    except Exception as e:  # noqa: BLE001 - TFDS raises many types; the message is what matters
        raise DataError(where, None, f"could not load the TFDS dataset: {type(e).__name__}: {e}") from e
    keys = set(info.features.keys())
    missing = [k for k in _TFDS_REQUIRED if k not in keys]
    if missing:
        raise DataError(where, None, f"not a SQuAD-like dataset: no feature(s) {missing} among {sorted(keys)}")
    version = "2.0" if "is_impossible" in keys else "1.1"
    check = _Checker(where, skip_bad_answers)
    titles, contexts = set(), set()

    def text(value, i: int, what: str) -> str:
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(where, i + 1, f"invalid UTF-8 in the {what} feature") from None
        return str(value)

    for i, ex in enumerate(tfds.as_numpy(ds)):
        qid = text(ex["id"], i, "id")
        pairs = {}
        for key in ("answers", "plausible_answers"):
            if key not in ex:
                pairs[key] = []
                continue
            texts, starts = ex[key]["text"], ex[key]["answer_start"]
            if len(texts) != len(starts):
                raise DataError(where, i + 1, f"question {qid!r}: {key} has {len(texts)} text(s) but "
                                              f"{len(starts)} answer_start value(s)")
            pairs[key] = [(text(t, i, f"{key}/text"), int(s)) for t, s in zip(texts, starts)]
        title = text(ex["title"], i, "title") if "title" in ex else ""
        context = text(ex["context"], i, "context")
        titles.add(title)
        contexts.add(context)
        check.add(i + 1, qid, text(ex["question"], i, "question"), context, pairs["answers"],
                  bool(ex.get("is_impossible", False)), pairs["plausible_answers"], title)
    return check.finish(version, f"{len(titles)} distinct titles, {len(contexts)} distinct contexts")
