"""SQuAD readers: the official JSON format (v1.1, v2.0), their errors, TFDS squad/v1.1 and squad/v2.0 (mocked) and
the real files."""
from __future__ import annotations

import copy
import json
import logging

import pytest
from reader_helpers import raises_at

from xtremedistil_tf.data.readers import (
    MissingFileError,
    QAData,
    QAExample,
    read_squad_json,
    read_tfds_squad,
)
from xtremedistil_tf.errors import DataError

CTX_A = "The Ash flows through Brontis. Its mayor is Ada Lind, elected in 1990."
CTX_B = "Cedrel has two bridges; the older one was built in 1712 by monks."

V11 = {"version": "1.1", "data": [
    {"title": "Brontis", "paragraphs": [{"context": CTX_A, "qas": [
        {"id": "q1", "question": "Who is the mayor?", "answers": [
            {"text": "Ada Lind", "answer_start": 44}, {"text": "Ada Lind", "answer_start": 44},
            {"text": "Lind", "answer_start": 48}]},
        {"id": "q2", "question": "When was she elected?", "answers": [{"text": "1990", "answer_start": 65}]}]}]},
    {"title": "Cedrel", "paragraphs": [{"context": CTX_B, "qas": [
        {"id": "q3", "question": "Who built the older bridge?", "answers": [{"text": "monks", "answer_start": 59}]}]}]},
]}

V20 = {"version": "v2.0", "data": [
    {"title": "Brontis", "paragraphs": [{"context": CTX_A, "qas": [
        {"question": "Who is the mayor?", "id": "a1", "answers": [{"text": "Ada Lind", "answer_start": 44}],
         "is_impossible": False},
        {"question": "Who was mayor before 1990?", "id": "a2", "answers": [],
         "plausible_answers": [{"text": "Ada Lind", "answer_start": 44}, {"text": "1990", "answer_start": 65}],
         "is_impossible": True}]}]},
    {"title": "Cedrel", "paragraphs": [
        {"context": CTX_B, "qas": [{"question": "How many bridges?", "id": "a3",
                                    "answers": [{"text": "two", "answer_start": 11}], "is_impossible": False}]},
        {"context": CTX_A, "qas": []}]},
]}


def write_json(tmp_path, doc, name="squad.json") -> str:
    """`doc` as pretty-printed JSON (one field a line, so line numbers mean something), or raw str/bytes."""
    path = tmp_path / name
    if isinstance(doc, (dict, list)):
        doc = json.dumps(doc, indent=1, ensure_ascii=False)
    path.write_bytes(doc.encode("utf-8") if isinstance(doc, str) else doc)
    return str(path)


def id_line(path: str, qid: str, occurrence: int = 0) -> int:
    """1-based line of the `occurrence`-th `"id": "<qid>"` in the file."""
    lines = [n for n, line in enumerate(open(path, encoding="utf-8"), 1) if f'"id": "{qid}"' in line]
    return lines[occurrence]


# ------------------------------------------------------------------------------------------------------------
# Hand-made files
# ------------------------------------------------------------------------------------------------------------

def test_v11_fields_read_back(tmp_path, caplog):
    p = write_json(tmp_path, V11)
    with caplog.at_level(logging.INFO):
        d = read_squad_json(p)
    assert isinstance(d, QAData) and d.path == p and d.version == "1.1" and len(d) == 3 and d.has_answers
    assert d.examples[0] == QAExample(
        "q1", "Who is the mayor?", CTX_A, (("Ada Lind", 44), ("Ada Lind", 44), ("Lind", 48)), False, (), "Brontis")
    assert d.examples[2] == QAExample("q3", "Who built the older bridge?", CTX_B, (("monks", 59),), title="Cedrel")
    # several answers kept in order, duplicates included
    assert d.gold == {"q1": ["Ada Lind", "Ada Lind", "Lind"], "q2": ["1990"], "q3": ["monks"]}
    assert f"{p}: SQuAD v1.1, 2 articles, 2 paragraphs, 3 questions (0 unanswerable), 5 answers" in caplog.text


def test_v20_unanswerable_and_plausible(tmp_path, caplog):
    p = write_json(tmp_path, V20)
    with caplog.at_level(logging.INFO):
        d = read_squad_json(p)
    assert d.version == "2.0" and len(d) == 3 and d.has_answers
    assert d.examples[0] == QAExample("a1", "Who is the mayor?", CTX_A, (("Ada Lind", 44),), False, (), "Brontis")
    assert d.examples[1] == QAExample("a2", "Who was mayor before 1990?", CTX_A, (), True,
                                      (("Ada Lind", 44), ("1990", 65)), "Brontis")
    assert d.examples[2].title == "Cedrel" and d.examples[2].answers == (("two", 11),)
    assert d.gold == {"a1": ["Ada Lind"], "a2": [], "a3": ["two"]}
    assert "2 articles, 3 paragraphs, 3 questions (1 unanswerable), 2 answers" in caplog.text


def test_version_from_content_bom_and_unlabelled(tmp_path):
    doc = copy.deepcopy(V20)
    del doc["version"]
    d = read_squad_json(write_json(tmp_path, doc))
    assert d.version == "2.0"  # an unanswerable question makes it v2.0
    doc["version"] = "1.1"
    assert read_squad_json(write_json(tmp_path, doc)).version == "2.0"
    # v2.0 by declaration alone, without unanswerable questions
    doc = copy.deepcopy(V11)
    doc["version"] = "v2.0"
    assert read_squad_json(write_json(tmp_path, doc)).version == "2.0"
    # a UTF-8 byte order mark is removed; titles are optional (as TFDS reads them)
    doc = copy.deepcopy(V11)
    del doc["data"][0]["title"]
    p = write_json(tmp_path, b"\xef\xbb\xbf" + json.dumps(doc).encode("utf-8"))
    d = read_squad_json(p)
    assert len(d) == 3 and d.examples[0].title == "" and d.examples[2].title == "Cedrel"
    # a split whose questions carry no answers at all is unlabelled: read, but not scored
    for art in doc["data"]:
        for par in art["paragraphs"]:
            for qa in par["qas"]:
                qa["answers"] = []
    d = read_squad_json(write_json(tmp_path, doc))
    assert len(d) == 3 and not d.has_answers and d.gold == {"q1": [], "q2": [], "q3": []}


def test_missing_file(tmp_path):
    p = str(tmp_path / "nope.json")
    with pytest.raises(MissingFileError) as info:
        read_squad_json(p)
    assert isinstance(info.value, FileNotFoundError) and info.value.path == p


# ------------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------------

def _edit(doc, fn):
    doc = copy.deepcopy(doc)
    fn(doc)
    return doc


def _qa(doc, a, p, q):
    return doc["data"][a]["paragraphs"][p]["qas"][q]


# (edit, the question id whose line is reported or None, the expected message)
FIELD_ERRORS = [
    # missing fields: before the id is known, the article (title) and the positions name the place
    (lambda d: _qa(d, 1, 0, 0).pop("id"), None,
     r"data\[1\] \(title 'Cedrel'\) paragraphs\[0\] qas\[0\]: missing field 'id' \(expected a string\)"),
    (lambda d: d["data"][0]["paragraphs"][0].pop("context"), None,
     r"data\[0\] \(title 'Brontis'\) paragraphs\[0\]: missing field 'context' \(expected a string\)"),
    (lambda d: d["data"][1].pop("paragraphs"), None,
     r"data\[1\] \(title 'Cedrel'\): missing field 'paragraphs' \(expected a list\)"),
    (lambda d: d.pop("data"), None, r"the file: missing field 'data' \(expected a list\)"),
    (lambda d: _qa(d, 0, 0, 1).pop("question"), "q2", r"question 'q2': missing field 'question' \(expected a string\)"),
    (lambda d: _qa(d, 0, 0, 1).pop("answers"), "q2", r"question 'q2': missing field 'answers' \(expected a list\)"),
    (lambda d: _qa(d, 0, 0, 0)["answers"][1].pop("answer_start"), "q1",
     r"question 'q1' answers\[1\]: missing field 'answer_start' \(expected an integer\)"),
    # wrong types
    (lambda d: _qa(d, 0, 0, 0)["answers"][0].update(answer_start="44"), "q1",
     r"question 'q1' answers\[0\]: field 'answer_start' must be an integer, found a string"),
    (lambda d: _qa(d, 0, 0, 0)["answers"][0].update(answer_start=44.0), "q1",
     r"field 'answer_start' must be an integer, found a number"),
    (lambda d: _qa(d, 0, 0, 0)["answers"][0].update(answer_start=True), "q1",
     r"field 'answer_start' must be an integer, found a boolean"),
    (lambda d: _qa(d, 0, 0, 1).update(answers={"text": "1990"}), "q2",
     r"question 'q2': field 'answers' must be a list, found an object"),
    (lambda d: _qa(d, 0, 0, 1)["answers"].__setitem__(0, "1990"), "q2",
     r"question 'q2' answers\[0\]: expected an object with 'text' and 'answer_start', found a string"),
    (lambda d: _qa(d, 0, 0, 1).update(is_impossible="no"), "q2",
     r"question 'q2': field 'is_impossible' must be true or false, found a string"),
    (lambda d: _qa(d, 0, 0, 1).update(question=None), "q2",
     r"question 'q2': field 'question' must be a string, found null"),
    (lambda d: _qa(d, 1, 0, 0).update(id=3), None,
     r"data\[1\] \(title 'Cedrel'\) paragraphs\[0\] qas\[0\]: field 'id' must be a string, found a number"),
    (lambda d: d["data"][0].update(title=["Brontis"]), None,
     r"data\[0\]: field 'title' must be a string, found a list"),
    (lambda d: d.update(version=1.1), None, r"field 'version' must be a string, found a number"),
    (lambda d: d["data"].__setitem__(1, "Cedrel"), None, r"data\[1\]: expected an article object, found a string"),
]


@pytest.mark.parametrize("edit, qid, message", FIELD_ERRORS)
def test_missing_and_wrongly_typed_fields(tmp_path, edit, qid, message):
    p = write_json(tmp_path, _edit(V11, edit))
    with raises_at(p, id_line(p, qid) if qid else None, message):
        read_squad_json(p)


def test_top_level_not_an_object(tmp_path):
    p = write_json(tmp_path, [V11])
    with raises_at(p, 1, "expected a JSON object with 'version' and 'data', found a list"):
        read_squad_json(p)
    p = write_json(tmp_path, {"version": "1.1", "data": []})
    with raises_at(p, None, "no questions"):
        read_squad_json(p)


def test_answer_not_at_its_start(tmp_path):
    p = write_json(tmp_path, _edit(V11, lambda d: _qa(d, 0, 0, 1)["answers"][0].update(answer_start=64)))
    line = id_line(p, "q2")
    assert line > 1
    with raises_at(p, line, r"question 'q2': answer '1990' is not at answer_start 64; the context holds ' 199' "
                            r"there \(the text first occurs at 65\); skip_bad_answers=True drops such answers"):
        read_squad_json(p)
    # text absent from the context; a start outside the context; an empty text; a bad plausible answer
    cases = [
        (lambda d: _qa(d, 1, 0, 0)["answers"][0].update(text="nuns"), "q3",
         r"answer 'nuns' is not at answer_start 59; the context holds 'monk' there "
         r"\(the text is not in the context\)"),
        (lambda d: _qa(d, 1, 0, 0)["answers"][0].update(answer_start=62), "q3",
         r"answer 'monks' at answer_start 62 runs outside the context \(65 characters\)"),
        (lambda d: _qa(d, 1, 0, 0)["answers"][0].update(answer_start=-5), "q3", r"runs outside the context"),
        (lambda d: _qa(d, 1, 0, 0)["answers"][0].update(text=""), "q3", r"question 'q3': empty answer text"),
    ]
    for edit, qid, message in cases:
        p = write_json(tmp_path, _edit(V11, edit))
        with raises_at(p, id_line(p, qid), message):
            read_squad_json(p)
    p = write_json(tmp_path, _edit(V20, lambda d: _qa(d, 0, 0, 1)["plausible_answers"][1].update(answer_start=3)))
    with raises_at(p, id_line(p, "a2"), r"question 'a2': plausible answer '1990' is not at answer_start 3"):
        read_squad_json(p)


def test_offsets_count_characters_not_bytes(tmp_path):
    ctx = "Beyoncé Knowles (née Knowles) sang “Halo” in 2008."
    doc = {"version": "1.1", "data": [{"title": "Beyoncé", "paragraphs": [{"context": ctx, "qas": [
        {"id": "b1", "question": "Which song?", "answers": [{"text": "“Halo”", "answer_start": ctx.index("“")}]}]}]}]}
    d = read_squad_json(write_json(tmp_path, doc))
    assert d.examples[0].answers == (("“Halo”", 35),) and d.examples[0].title == "Beyoncé"


def test_skip_bad_answers_counts_and_logs(tmp_path, caplog):
    def edit(d):
        _qa(d, 0, 0, 0)["answers"][1]["answer_start"] = 40  # one of q1's three answers
        _qa(d, 1, 0, 0)["answers"][0]["text"] = "nuns"  # q3's only answer: q3 goes
    p = write_json(tmp_path, _edit(V11, edit))
    with caplog.at_level(logging.INFO):
        d = read_squad_json(p, skip_bad_answers=True)
    assert [e.qid for e in d.examples] == ["q1", "q2"]
    assert d.examples[0].answers == (("Ada Lind", 44), ("Lind", 48))
    assert (f"{p}: dropped 2 answer(s) not at their answer_start (skip_bad_answers=True) and 1 question(s) left "
            f"without an answer; first: line {id_line(p, 'q1')}: question 'q1': answer 'Ada Lind' is not at "
            f"answer_start 40") in caplog.text
    assert "2 articles, 2 paragraphs, 2 questions (0 unanswerable), 3 answers" in caplog.text
    # an unanswerable question keeps its place when a plausible answer is dropped
    p = write_json(tmp_path, _edit(V20, lambda d: _qa(d, 0, 0, 1)["plausible_answers"][1].update(answer_start=3)))
    d = read_squad_json(p, skip_bad_answers=True)
    assert len(d) == 3 and d.examples[1].is_impossible and d.examples[1].plausible_answers == (("Ada Lind", 44),)
    # type errors are never skipped
    p = write_json(tmp_path, _edit(V11, lambda d: _qa(d, 0, 0, 0)["answers"][0].update(answer_start="44")))
    with raises_at(p, id_line(p, "q1"), "must be an integer"):
        read_squad_json(p, skip_bad_answers=True)


def test_duplicate_id(tmp_path):
    p = write_json(tmp_path, _edit(V11, lambda d: _qa(d, 1, 0, 0).update(id="q1")))
    first, second = id_line(p, "q1"), id_line(p, "q1", 1)
    with raises_at(p, second, rf"duplicate question id 'q1' \(first at line {first}\)"):
        read_squad_json(p)


def test_unanswerable_with_answers_and_answerable_without(tmp_path):
    p = write_json(tmp_path, _edit(V20, lambda d: _qa(d, 0, 0, 1)["answers"].append(
        {"text": "Ada Lind", "answer_start": 44})))
    with raises_at(p, id_line(p, "a2"), r"question 'a2' is unanswerable \(is_impossible true\) but has 1 answer\(s\); "
                                        r"expected none"):
        read_squad_json(p)
    p = write_json(tmp_path, _edit(V20, lambda d: _qa(d, 1, 0, 0).update(answers=[])))
    with raises_at(p, id_line(p, "a3"), r"question 'a3' has no answers, yet it is answerable \(is_impossible false\) "
                                        r"and other questions of the split have answers"):
        read_squad_json(p)
    # v1.1 has no unanswerable questions: a labelled file's question without answers cannot be scored
    p = write_json(tmp_path, _edit(V11, lambda d: _qa(d, 0, 0, 1).update(answers=[])))
    with raises_at(p, id_line(p, "q2"), r"question 'q2' has no answers, yet it is a SQuAD v1.1 question"):
        read_squad_json(p)


def test_invalid_json_and_utf8(tmp_path):
    text = json.dumps(V11, indent=1)
    lines = text.split("\n")
    lines[6] = lines[6] + ","  # a trailing comma inside an object or list
    p = write_json(tmp_path, "\n".join(lines))
    with pytest.raises(DataError, match=rf"^{p}:\d+: invalid JSON: ") as info:
        read_squad_json(p)
    assert info.value.line in (7, 8)  # the comma's line, or the next token's
    p = write_json(tmp_path, '{"version": "1.1",\n "data": [\n')
    with raises_at(p, 3, "invalid JSON: Expecting value"):
        read_squad_json(p)
    raw = text.encode("utf-8").replace(b"Brontis", b"Bront\xe9s", 1)
    bad_line = raw[:raw.index(b"\xe9")].count(b"\n") + 1
    assert bad_line > 1
    p = write_json(tmp_path, raw)
    with raises_at(p, bad_line, r"invalid UTF-8 \(byte 0xe9 at column \d+\); data files must be UTF-8"):
        read_squad_json(p)


# ------------------------------------------------------------------------------------------------------------
# TFDS (mocked, offline)
# ------------------------------------------------------------------------------------------------------------

def _squad_rows(n, *, v2, bad=None):
    """`n` SQuAD-like TFDS examples whose answers sit at their offsets; `bad(i, row)` may spoil some."""
    import numpy as np
    rows = []
    for i in range(n):
        ctx = f"Town {i} lies on the river Ash. Its mayor is Ada {i}, elected in {1900 + i}."
        mayor = f"Ada {i}"
        impossible = v2 and i % 3 == 2
        answers = [] if impossible else [(mayor, ctx.index(mayor))] * (1 if v2 else 2)
        row = {"id": f"t{i}".encode(), "title": f"Town_{i // 2}".encode(), "context": ctx.encode(),
               "question": f"Who is the mayor of Town {i}?".encode(),
               "answers": {"text": np.array([t.encode() for t, _ in answers], dtype=object),
                           "answer_start": np.array([s for _, s in answers], dtype=np.int32)}}
        if v2:
            plausible = [("Ash", ctx.index("Ash"))] if impossible else []
            row["is_impossible"] = impossible
            row["plausible_answers"] = {"text": np.array([t.encode() for t, _ in plausible], dtype=object),
                                        "answer_start": np.array([s for _, s in plausible], dtype=np.int32)}
        if bad is not None:
            bad(i, row)
        rows.append(row)
    return rows


def _as_dataset(n, bad=None):
    """An `as_dataset_fn` for tfds.testing.mock_data: `n` consistent examples with the builder's own features."""
    import tensorflow as tf

    def as_dataset(self, *args, **kwargs):
        spec = self.info.features.get_tensor_spec()
        rows = _squad_rows(n, v2="is_impossible" in spec, bad=bad)
        return tf.data.Dataset.from_generator(lambda: iter(rows), output_signature=spec)

    return as_dataset


def test_tfds_squad_v11_mock(caplog):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5, as_dataset_fn=_as_dataset(5)):
        with caplog.at_level(logging.INFO):
            d = read_tfds_squad("squad/v1.1", "train")
        dev = read_tfds_squad("squad/v1.1", "dev")
    assert d.path == "tfds:squad/v1.1/train" and dev.path == "tfds:squad/v1.1/validation"
    assert d.version == "1.1" and len(d) == 5 and d.has_answers and len(dev) == 5
    ctx = "Town 3 lies on the river Ash. Its mayor is Ada 3, elected in 1903."
    assert d.examples[3] == QAExample("t3", "Who is the mayor of Town 3?", ctx, (("Ada 3", 43), ("Ada 3", 43)),
                                      False, (), "Town_1")
    assert all(e.context[s:s + len(t)] == t for e in d.examples for t, s in e.answers)
    assert "tfds:squad/v1.1/train: SQuAD v1.1, 3 distinct titles, 5 distinct contexts, 5 questions" in caplog.text


def test_tfds_squad_v20_mock():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=7, as_dataset_fn=_as_dataset(7)):
        d = read_tfds_squad("squad/v2.0", "validation")
    assert d.path == "tfds:squad/v2.0/validation" and d.version == "2.0" and len(d) == 7 and d.has_answers
    assert [e.is_impossible for e in d.examples] == [False, False, True, False, False, True, False]
    e = d.examples[2]
    assert e.answers == () and e.plausible_answers == (("Ash", 25),) and e.context[25:28] == "Ash"
    assert d.gold["t2"] == [] and d.gold["t0"] == ["Ada 0"]
    assert all(x.context[s:s + len(t)] == t for x in d.examples for t, s in x.answers + x.plausible_answers)


def test_tfds_squad_errors_and_skip():
    tfds = pytest.importorskip("tensorflow_datasets")

    def shift(i, row):  # example 2 (1-based) gets an answer one character off
        if i == 1:
            row["answers"]["answer_start"] = row["answers"]["answer_start"] + 1

    with tfds.testing.mock_data(num_examples=4, as_dataset_fn=_as_dataset(4, bad=shift)):
        with raises_at("tfds:squad/v1.1/train", 2, r"question 't1': answer 'Ada 1' is not at answer_start 44; the "
                                                   r"context holds 'da 1,' there"):
            read_tfds_squad("squad/v1.1", "train")
        d = read_tfds_squad("squad/v1.1", "train", skip_bad_answers=True)
    assert [e.qid for e in d.examples] == ["t0", "t2", "t3"]  # t1 lost both its answers

    def answered_impossible(i, row):
        if i == 2:
            row["answers"] = copy.deepcopy(row["plausible_answers"])

    with tfds.testing.mock_data(num_examples=4, as_dataset_fn=_as_dataset(4, bad=answered_impossible)):
        with raises_at("tfds:squad/v2.0/train", 3, r"question 't2' is unanswerable \(is_impossible true\) but has "
                                                   r"1 answer\(s\)"):
            read_tfds_squad("squad/v2.0", "train")

    def duplicate(i, row):
        if i == 3:
            row["id"] = b"t0"

    with tfds.testing.mock_data(num_examples=4, as_dataset_fn=_as_dataset(4, bad=duplicate)):
        with raises_at("tfds:squad/v2.0/train", 4, r"duplicate question id 't0' \(first at line 1\)"):
            read_tfds_squad("squad/v2.0", "train")


def test_tfds_squad_stock_mock_is_reported():
    """The stock mock draws random texts, answer texts and answer_starts as sequences of unrelated lengths, and
    is_impossible at random next to answers: nothing of that is a readable SQuAD example, and it is reported, not
    trimmed (the reading itself is tested above on consistent mock examples)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=3):
        for name in ("squad/v1.1", "squad/v2.0"):
            with pytest.raises(DataError, match=rf"^tfds:{name}/train:\d+: question '[^']*': "
                                                r"(\w+ has \d+ text\(s\) but \d+ answer_start|.* is not at answer_start"
                                                r"|.* is unanswerable)"):
                read_tfds_squad(name, "train")


def test_tfds_squad_load_error_and_features():
    tfds = pytest.importorskip("tensorflow_datasets")
    with raises_at("tfds:no_such_dataset_xyz/train", None, "could not load the TFDS dataset"):
        read_tfds_squad("no_such_dataset_xyz", "train", download=False)
    with tfds.testing.mock_data(num_examples=2):
        with raises_at("tfds:glue/sst2/train", None, r"not a SQuAD-like dataset: no feature\(s\) \['id', 'question', "
                                                     r"'context', 'answers'\]"):
            read_tfds_squad("glue/sst2", "train")


# ------------------------------------------------------------------------------------------------------------
# The real files (skipped when ../shared/data is absent)
# ------------------------------------------------------------------------------------------------------------

def _real(shared_data_dir, name):
    path = shared_data_dir / "squad" / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return read_squad_json(str(path))


def test_real_dev_v11(shared_data_dir):
    d = _real(shared_data_dir, "dev-v1.1.json")
    assert d.version == "1.1" and len(d) == 10570 and d.has_answers
    assert len({e.title for e in d.examples}) == 48 and len({e.context for e in d.examples}) == 2067
    assert not any(e.is_impossible for e in d.examples)
    assert sum(len(e.answers) for e in d.examples) == 34726 and min(len(e.answers) for e in d.examples) == 1
    assert all(e.context[s:s + len(t)] == t for e in d.examples for t, s in e.answers)
    first = d.examples[0]
    assert first.qid == "56be4db0acb8001400a502ec" and first.title == "Super_Bowl_50"
    assert d.gold[first.qid] == ["Denver Broncos"] * 3


def test_real_train_v20_first10(shared_data_dir):
    d = _real(shared_data_dir, "train-v2.0-first10.json")
    assert d.version == "2.0" and len(d) == 4719 and d.has_answers
    impossible = [e for e in d.examples if e.is_impossible]
    assert len(impossible) == 348 and all(not e.answers and e.plausible_answers for e in impossible)
    assert all(len(e.answers) == 1 for e in d.examples if not e.is_impossible)
    assert len({e.title for e in d.examples}) == 10
    assert all(e.context[s:s + len(t)] == t for e in d.examples for t, s in e.answers + e.plausible_answers)
