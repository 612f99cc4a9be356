"""Readers: every input format on small files the tests write, every bad-input case, and the real files."""
from __future__ import annotations

import logging
import types

import pytest
from reader_helpers import raises_at

from xtremedistil_tf.data import registry
from xtremedistil_tf.data.readers import (
    CONLL2003_TFDS_TAGS,
    GLUE_LABEL_NAMES,
    DataError,
    Example,
    MissingFileError,
    count_lines,
    iter_transfer_file,
    read_conll,
    read_glue,
    read_task_file,
    read_task_folder,
    read_tfds,
)


def write(folder, name, content) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return str(path)


# ------------------------------------------------------------------------------------------------------------
# The original release's task folders
# ------------------------------------------------------------------------------------------------------------

def test_task_file_classification_single_and_pair(tmp_path):
    p = write(tmp_path, "train.tsv", "good movie \t1\nbad film\t0\n\nfine\t1\n")
    d = read_task_file(p, kind="classification", pairwise=False, label_names=None)
    assert d.label_names == ["0", "1"] and d.kind == "classification" and not d.pairwise and d.path == p
    assert d.examples == [Example("good movie ", None, 1, 0), Example("bad film", None, 0, 1), Example("fine", None, 1, 2)]
    assert d.has_labels and d.num_labels == 2 and len(d) == 3

    p = write(tmp_path, "pairs.tsv", "a b\tc d\tyes\ne\tf\tno\n")
    d = read_task_file(p, kind="classification", pairwise=True, label_names=["no", "yes"])
    assert d.pairwise and [(e.text_a, e.text_b, e.label) for e in d.examples] == [("a b", "c d", 1), ("e", "f", 0)]


def test_integer_labels_sort_numerically(tmp_path):
    p = write(tmp_path, "t.tsv", "".join(f"x{i}\t{i}\n" for i in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9)))
    d = read_task_file(p, kind="classification", pairwise=False, label_names=None)
    assert d.label_names == [str(i) for i in range(11)]
    # For labels 0..K-1 the id is the integer itself, as in the original (int(label)).
    assert all(e.label == int(e.text_a[1:]) for e in d.examples)


def test_task_file_regression_ner_and_unlabelled(tmp_path):
    p = write(tmp_path, "r.tsv", "a\tb\t3.5\nc\td\t-1\n")
    d = read_task_file(p, kind="regression", pairwise=True, label_names=None)
    assert d.label_names is None and [e.label for e in d.examples] == [3.5, -1.0]
    assert isinstance(d.examples[0].label, float)

    p = write(tmp_path, "ner.tsv", "EU rejects German\tB-ORG O B-MISC\nPeter  Blackburn\tB-PER I-PER\n")
    d = read_task_file(p, kind="ner", pairwise=False, label_names=["O", "B-ORG", "B-MISC", "B-PER", "I-PER"])
    assert d.examples[0] == Example(("EU", "rejects", "German"), None, (1, 0, 2), 0)
    assert d.examples[1].text_a == ("Peter", "Blackburn") and d.examples[1].label == (3, 4)

    p = write(tmp_path, "u.tsv", "just text\nmore text\n")
    d = read_task_file(p, kind="classification", pairwise=False, label_names=["0", "1"], has_labels=False)
    assert [e.label for e in d.examples] == [None, None] and not d.has_labels
    p = write(tmp_path, "un.tsv", "w1 w2 w3\n")
    d = read_task_file(p, kind="ner", pairwise=False, label_names=["O"], has_labels=False)
    assert d.examples[0].text_a == ("w1", "w2", "w3") and d.examples[0].label is None


def test_task_folder_labels_tsv_and_inferred(tmp_path):
    folder = tmp_path / "task"
    write(folder, "train.tsv", "a\tpos\nb\tneg\n")
    write(folder, "dev.tsv", "c\tneg\n")
    out = read_task_folder(str(folder))
    assert set(out) == {"train", "dev"} and out["train"].label_names == ["neg", "pos"]
    assert out["dev"].examples[0].label == 0

    write(folder, "labels.tsv", "pos\nneg\n\n")
    write(folder, "test.tsv", "d\tpos\n")
    out = read_task_folder(str(folder))
    assert set(out) == {"train", "dev", "test"} and out["train"].label_names == ["pos", "neg"]
    assert out["train"].examples[0].label == 0 and out["test"].examples[0].label == 0


def test_task_folder_ner_and_pairwise(tmp_path):
    folder = tmp_path / "ner"
    write(folder, "train.tsv", "a b\tO B-X\n")
    with raises_at(str(folder / "labels.tsv"), None, "labels.tsv"):
        read_task_folder(str(folder), do_NER=True)
    write(folder, "labels.tsv", "O\nB-X\n")
    out = read_task_folder(str(folder), do_NER=True)
    assert out["train"].kind == "ner" and out["train"].examples[0].label == (0, 1)

    folder = tmp_path / "pair"
    write(folder, "train.tsv", "a\tb\t1\nc\td\t0\n")
    out = read_task_folder(str(folder), do_pairwise=True)
    assert out["train"].pairwise and out["train"].examples[0].text_b == "b"


def test_task_folder_errors(tmp_path):
    with pytest.raises(MissingFileError, match="task folder not found"):
        read_task_folder(str(tmp_path / "nope"))
    folder = tmp_path / "t"
    write(folder, "dev.tsv", "a\t1\n")
    with raises_at(str(folder / "train.tsv"), None, "train.tsv"):
        read_task_folder(str(folder))
    write(folder, "train.tsv", "a\t0\nb\t1\n")
    p = write(folder, "dev.tsv", "a\t1\nb\t2\n")
    with raises_at(p, 2, r"label '2' is not in the label set \('0', '1'\)"):
        read_task_folder(str(folder))
    write(folder, "dev.tsv", "a\t1\n")
    p = write(folder, "labels.tsv", "0\n1\n0\n")
    with raises_at(p, 3, "duplicate label"):
        read_task_folder(str(folder))


BAD_TASK_FILES = [
    # (name, content, kind, pairwise, label_names, line, message)
    ("cols.tsv", "a\t1\nb\t0\textra\n", "classification", False, ["0", "1"], 2, r"expected 2 tab-separated column\(s\) \(text<TAB>label\), found 3"),
    ("cols1.tsv", "a\t1\njust text\n", "classification", False, ["0", "1"], 2, "found 1"),
    ("pcols.tsv", "a\tb\t1\na\t1\n", "classification", True, ["0", "1"], 2, r"text_a<TAB>text_b<TAB>label"),
    ("label.tsv", "a\t1\nb\tmaybe\n", "classification", False, ["0", "1"], 2, "label 'maybe' is not in the label set"),
    ("emptylabel.tsv", "a\t\n", "classification", False, ["0", "1"], 1, "empty label"),
    ("reg.tsv", "a\tb\tnan-ish\n", "regression", True, None, 1, "expected a finite number"),
    ("empty.tsv", "", "classification", False, ["0", "1"], None, "empty file"),
    ("blank.tsv", "\n  \n\n", "classification", False, ["0", "1"], None, "empty file"),
    ("utf8.tsv", b"ok\t1\nbad \xff byte\t0\n", "classification", False, ["0", "1"], 2, r"invalid UTF-8 \(byte 0xff at column 5\)"),
    ("ner.tsv", "a b c\tO O O\na b\tO O O\n", "ner", False, ["O"], 2, "NER line has 2 word.s. but 3 tag.s."),
    ("nertag.tsv", "a b\tO B-PER\n", "ner", False, ["O"], 1, "label 'B-PER' is not in the label set"),
    ("nercols.tsv", "a b\n", "ner", False, ["O"], 1, r"words<TAB>tags"),
]


@pytest.mark.parametrize("name,content,kind,pairwise,label_names,line,message", BAD_TASK_FILES,
                         ids=[c[0] for c in BAD_TASK_FILES])
def test_task_file_bad_input(tmp_path, name, content, kind, pairwise, label_names, line, message):
    p = write(tmp_path, name, content)
    with raises_at(p, line, message):
        read_task_file(p, kind=kind, pairwise=pairwise, label_names=label_names)


def test_missing_file_is_data_error_and_file_not_found(tmp_path):
    p = str(tmp_path / "missing.tsv")
    with raises_at(p, None, "file not found"):
        read_task_file(p, kind="classification", pairwise=False, label_names=None)
    with pytest.raises(FileNotFoundError):
        read_conll(p)
    with pytest.raises(DataError, match="is a folder"):
        read_task_file(str(tmp_path), kind="classification", pairwise=False, label_names=None)
    with pytest.raises(DataError, match="file not found"):
        list(iter_transfer_file(p))
    with pytest.raises(DataError, match="file not found"):
        count_lines(p)


def test_bom_crlf_and_unicode_line_separators(tmp_path):
    p = write(tmp_path, "bom.tsv", b"\xef\xbb\xbfcaf\xc3\xa9\t1\r\nsplit\xe2\x80\xa8here\xc2\x85too\t0\r\n")
    d = read_task_file(p, kind="classification", pairwise=False, label_names=["0", "1"])
    assert d.examples[0].text_a == "café" and d.examples[0].label == 1
    assert d.examples[1].text_a == "split\u2028here\x85too" and len(d) == 2
    assert count_lines(p) == 2
    assert next(iter_transfer_file(p)).text_a == "café"


def test_skips_are_counted_and_logged(tmp_path, caplog):
    p = write(tmp_path, "t.tsv", "a\t1\n\n\nb\t0\n   \n")
    with caplog.at_level(logging.INFO):
        d = read_task_file(p, kind="classification", pairwise=False, label_names=["0", "1"])
    assert len(d) == 2
    assert f"{p}: skipped 3 blank line(s)" in caplog.text
    assert "0=1, 1=1" in caplog.text  # label counts

    p = write(tmp_path, "bad.tsv", "a\t1\nb\t0\tx\nc\t7\nd\t0\n")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        d = read_task_file(p, kind="classification", pairwise=False, label_names=["0", "1"], skip_bad_lines=True)
    assert [e.text_a for e in d.examples] == ["a", "d"] and [e.idx for e in d.examples] == [0, 1]
    assert "skipped 1 bad line(s)" in caplog.text and "line 2: expected 2" in caplog.text
    assert "line 3: label '7' is not in the label set" in caplog.text
    with raises_at(p, 2, "found 3"):
        read_task_file(p, kind="classification", pairwise=False, label_names=["0", "1"], skip_bad_lines=False)


def test_transfer_file_streams(tmp_path, caplog):
    p = write(tmp_path, "transfer.tsv", "one\n\ntwo\tand a label\nthree\n")
    it = iter_transfer_file(p, kind="classification", pairwise=False)
    assert isinstance(it, types.GeneratorType)
    with caplog.at_level(logging.INFO):
        got = list(it)
    assert got == [Example("one", None, None, 0), Example("two", None, None, 1), Example("three", None, None, 2)]
    assert "ignored the label column of 1 line(s)" in caplog.text and "skipped 1 blank line(s)" in caplog.text
    assert count_lines(p) == 3

    p = write(tmp_path, "pairs.tsv", "a\tb\nc\td\t1\n")
    assert [(e.text_a, e.text_b) for e in iter_transfer_file(p, kind="classification", pairwise=True)] == [("a", "b"), ("c", "d")]
    p = write(tmp_path, "ner.tsv", "w1 w2\nw3\tO\n")
    assert [e.text_a for e in iter_transfer_file(p, kind="ner", pairwise=False)] == [("w1", "w2"), ("w3",)]

    p = write(tmp_path, "bad.tsv", "a\nb\tc\td\n")
    with raises_at(p, 2, "expected 1 tab-separated column"):
        list(iter_transfer_file(p))
    p = write(tmp_path, "empty.tsv", "\n")
    with raises_at(p, None, "empty file"):
        list(iter_transfer_file(p))
    with pytest.raises(ValueError, match="kind"):
        list(iter_transfer_file(p, kind="tagging"))


# ------------------------------------------------------------------------------------------------------------
# GLUE as distributed
# ------------------------------------------------------------------------------------------------------------

def _glue_fixture(root):
    t = "\t"
    write(root / "CoLA", "train.tsv", f"gj04{t}1{t}{t}Good sentence.\ngj04{t}0{t}*{t}Sentence bad.\n")
    write(root / "CoLA", "dev.tsv", f"gj04{t}0{t}*{t}Bad.\n")
    write(root / "CoLA", "test.tsv", f"index{t}sentence\n0{t}Who knows.\n")
    write(root / "SST-2", "train.tsv", f"sentence{t}label\nnice film {t}1\nawful {t}0\n")
    write(root / "SST-2", "dev.tsv", f"sentence{t}label\nok {t}1\n")
    write(root / "SST-2", "test.tsv", f"index{t}sentence\n7{t}unknown .\n8{t}more .\n")
    write(root / "MRPC", "train.tsv", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA cat.\tThe cat.\n0\t3\t4\tX.\tY.\n")
    write(root / "MRPC", "test.tsv", "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t5\t6\tP.\tQ.\n")
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
    write(root / "STS-B", "dev.tsv", f"{header}\tscore\n0\tg\tf\t2012\t0\tnone\tnone\tA man.\tA guy.\t4.750\n")
    write(root / "STS-B", "test.tsv", f"{header}\n0\tg\tf\t2012\t0\tnone\tnone\tA.\tB.\n")
    write(root / "QQP", "train.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n133273\t1\t2\tHow?\tWhy?\t0\n5\t3\t4\tQ\tQ\t1\n")
    write(root / "QQP", "test.tsv", "id\tquestion1\tquestion2\n0\tA?\tB?\n")
    mnli_cols = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                 "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
    row = ["{i}", "1", "1e", "gov", "( a )", "( b )", "(ROOT a)", "(ROOT b)", "Premise {i}.", "Hypothesis {i}."]
    write(root / "MNLI", "train.tsv", "\t".join(mnli_cols + ["label1", "gold_label"]) + "\n" + "".join(
        "\t".join(row + [g, g]).format(i=i) + "\n" for i, g in enumerate(["neutral", "contradiction", "entailment"])))
    dev_cols = mnli_cols + ["label1", "label2", "label3", "label4", "label5", "gold_label"]
    for name, g in (("dev_matched", "contradiction"), ("dev_mismatched", "entailment")):
        write(root / "MNLI", f"{name}.tsv", "\t".join(dev_cols) + "\n" + "\t".join(row + [g] * 6).format(i=3) + "\n")
    for name in ("test_matched", "test_mismatched"):
        write(root / "MNLI", f"{name}.tsv", "\t".join(mnli_cols) + "\n" + "\t".join(row).format(i=9) + "\n")
    write(root / "QNLI", "dev.tsv", "index\tquestion\tsentence\tlabel\n0\tQ?\tS.\tnot_entailment\n1\tQ2?\tS2.\tentailment\n")
    write(root / "RTE", "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tnot_entailment\n")
    write(root / "WNLI", "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\t1\n1\tC.\tD.\t0\n")


def test_glue_all_nine_tasks(tmp_path):
    _glue_fixture(tmp_path)
    cola = read_glue("cola", str(tmp_path))
    assert set(cola) == {"train", "dev", "test"}
    assert cola["train"].examples[0] == Example("Good sentence.", None, 1, 0)
    assert cola["train"].label_names == ["unacceptable", "acceptable"]
    assert cola["test"].examples[0] == Example("Who knows.", None, None, 0)

    sst2 = read_glue("SST-2", str(tmp_path / "SST-2"))  # the task folder itself works too
    assert [e.label for e in sst2["train"].examples] == [1, 0]
    assert [(e.idx, e.label) for e in sst2["test"].examples] == [(7, None), (8, None)]

    mrpc = read_glue("mrpc", str(tmp_path))
    assert mrpc["train"].pairwise and mrpc["train"].examples[0] == Example("A cat.", "The cat.", 1, 0)
    assert mrpc["train"].label_names == ["not_equivalent", "equivalent"] and "dev" not in mrpc

    stsb = read_glue("sts-b", str(tmp_path))
    assert stsb["dev"].kind == "regression" and stsb["dev"].label_names is None
    assert stsb["dev"].examples[0].label == 4.75 and stsb["test"].examples[0].label is None

    qqp = read_glue("qqp", str(tmp_path))
    assert [(e.idx, e.label) for e in qqp["train"].examples] == [(133273, 0), (5, 1)]
    assert qqp["test"].examples[0] == Example("A?", "B?", None, 0)

    mnli = read_glue("mnli", str(tmp_path))
    assert set(mnli) == {"train", "dev_matched", "dev_mismatched", "test_matched", "test_mismatched"}
    assert mnli["train"].label_names == ["entailment", "neutral", "contradiction"]
    assert [e.label for e in mnli["train"].examples] == [1, 2, 0]
    assert mnli["dev_matched"].examples[0] == Example("Premise 3.", "Hypothesis 3.", 2, 3)
    assert mnli["dev_mismatched"].examples[0].label == 0
    assert mnli["test_matched"].examples[0] == Example("Premise 9.", "Hypothesis 9.", None, 9)

    qnli = read_glue("qnli", str(tmp_path))
    assert list(qnli) == ["dev"] and [e.label for e in qnli["dev"].examples] == [1, 0]
    assert read_glue("rte", str(tmp_path))["train"].examples[0].label == 1
    wnli = read_glue("wnli", str(tmp_path))["train"]
    assert wnli.label_names == ["not_entailment", "entailment"] and [e.label for e in wnli.examples] == [1, 0]
    for task, names in GLUE_LABEL_NAMES.items():
        assert registry.glue_files(task).splits[0] == "train" and (names is None) == (task == "stsb")


def test_glue_errors(tmp_path):
    t = "\t"
    p = write(tmp_path / "SST-2", "train.tsv", f"sentence{t}label\nok{t}1\nbad{t}2\n")
    with raises_at(p, 3, r"label '2' is not in the label set \(0, 1 = negative, positive\)"):
        read_glue("sst2", str(tmp_path))
    p = write(tmp_path / "SST-2", "train.tsv", f"sentence{t}label\nok{t}1\nno tab here\n")
    with raises_at(p, 3, r"expected 2 tab-separated columns \(sentence, label\), found 1"):
        read_glue("sst2", str(tmp_path))
    out = read_glue("sst2", str(tmp_path), skip_bad_lines=True)
    assert len(out["train"]) == 1
    p = write(tmp_path / "SST-2", "train.tsv", f"text{t}label\nok{t}1\n")
    with raises_at(p, 1, "expected a header with column.s. 'sentence'"):
        read_glue("sst2", str(tmp_path))
    p = write(tmp_path / "SST-2", "train.tsv", "sentence\nok\n")
    with raises_at(p, 1, "expected a 'label' label column"):
        read_glue("sst2", str(tmp_path))
    p = write(tmp_path / "SST-2", "train.tsv", "sentence\tlabel\n")
    with raises_at(p, None, "empty file"):
        read_glue("sst2", str(tmp_path))
    p = write(tmp_path / "SST-2", "train.tsv", "")
    with raises_at(p, None, "empty file"):
        read_glue("sst2", str(tmp_path))
    p = write(tmp_path / "QNLI", "dev.tsv", "index\tquestion\tsentence\tlabel\n0\tQ\tS\tentails\n")
    with raises_at(p, 2, "label 'entails' is not in the label set .'entailment', 'not_entailment'."):
        read_glue("qnli", str(tmp_path))
    p = write(tmp_path / "STS-B", "dev.tsv", "sentence1\tsentence2\tscore\nA\tB\thigh\n")
    with raises_at(p, 2, "expected a number"):
        read_glue("stsb", str(tmp_path))
    p = write(tmp_path / "CoLA", "train.tsv", b"gj04\t1\t\tfine\ngj04\t1\t\t\xc3\x28\n")
    with raises_at(p, 2, "invalid UTF-8"):
        read_glue("cola", str(tmp_path))
    with raises_at(str(tmp_path), None, "no GLUE rte files"):
        read_glue("rte", str(tmp_path))
    with raises_at(str(tmp_path / "QNLI" / "train.tsv"), None, "file not found"):
        read_glue("qnli", str(tmp_path), splits=["train"])
    with pytest.raises(ValueError, match="unknown GLUE task"):
        read_glue("squad", str(tmp_path))


def test_registry_names_and_tables():
    # read_glue's spelling: case, -, _ and spaces ignored; only the tasks with GLUE files
    assert registry.glue_task_name("SST-2") == "sst2" and registry.glue_task_name("sts_b") == "stsb"
    for bad in ("squad", "ax", "mnli_matched", "glue/sst2"):
        with pytest.raises(ValueError, match="unknown GLUE task"):
            registry.glue_task_name(bad)
    # the metrics' spelling: glue/ prefix and aliases; MNLI's dev sets, AX and "ner" are scoring names
    assert registry.scoring_name(" GLUE/SST-2 ") == "sst2"
    assert registry.scoring_name("MNLI-mm") == "mnli_mismatched" and registry.scored_task("mnli_m").name == "mnli"
    assert registry.scored_task("ner").name == "conll2003" and registry.main_metric("ner") == "f1"
    assert registry.main_metric("ax") == "mcc" and registry.metric_names("stsb") == ("pearson", "spearman", "corr")
    with pytest.raises(ValueError, match="unknown task 'boolq'; known tasks: cola, sst2"):
        registry.scoring_name("boolq")
    assert registry.scoring_name("SQuAD2.0") == "squad_v2" and registry.scored_task("squad").kind == "qa"
    # one table: readers' constants are views of it
    assert registry.GLUE_TASKS == ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
    assert all(registry.TASKS[t].label_names == GLUE_LABEL_NAMES[t] for t in registry.GLUE_TASKS)
    assert CONLL2003_TFDS_TAGS == registry.TASKS["conll2003"].label_names
    assert all(t.kind in registry.KINDS for t in registry.TASKS.values())
    assert GLUE_LABEL_NAMES["wnli"] == ("not_entailment", "entailment")  # TFDS order, not alphabetical


def test_registry_submission_and_tfds_names():
    assert [registry.submission_name(t) for t in registry.GLUE_TASKS] == [
        "CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI-m", "QNLI", "RTE", "WNLI"]
    assert registry.submission_name("mnli", "test_matched") == "MNLI-m"
    assert registry.submission_name("mnli", "test_mismatched") == "MNLI-mm"
    assert registry.submission_name("ax") == "AX"
    with pytest.raises(ValueError, match="no test split 'dev'"):
        registry.submission_name("sst2", "dev")
    with pytest.raises(ValueError, match="no submission file"):
        registry.submission_name("ner")
    assert registry.tfds_split("glue/mnli", "dev_mismatched[:10]") == "validation_mismatched[:10]"
    assert registry.tfds_split("glue/sst2", "train") == "train"
    assert registry.tfds_split("conll2003", "validation") == "dev"
    assert registry.tfds_split("imdb_reviews", "dev") == "dev"
    assert registry.tfds_text_keys("qqp") == ("question1", "question2")
    assert registry.tfds_text_keys("imdb") == (None, None)


# ------------------------------------------------------------------------------------------------------------
# CoNLL
# ------------------------------------------------------------------------------------------------------------

def test_conll(tmp_path, caplog):
    p = write(tmp_path, "c.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n"
                                 "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n")
    with caplog.at_level(logging.INFO):
        d = read_conll(p)
    assert "skipped 1 -DOCSTART- line(s)" in caplog.text
    assert d.kind == "ner" and d.label_names == ["B-ORG", "B-PER", "I-PER", "O"]
    assert d.examples == [Example(("EU", "rejects"), None, (0, 3), 0), Example(("Peter", "Blackburn"), None, (1, 2), 1)]
    d = read_conll(p, label_names=CONLL2003_TFDS_TAGS)
    assert d.examples[0].label == (3, 0)

    p3 = write(tmp_path, "c3.txt", "a\tDT\tO\nb DT B-X\n")  # 3 columns, tabs or spaces
    assert read_conll(p3).examples[0].label == (1, 0)


@pytest.mark.parametrize("content,line,message", [
    ("a DT O\nb DT O X\n", 2, "expected 3 columns like line 1"),
    ("a DT O\nlonely\n", 2, "at least 2 space-separated columns"),
    ("", None, "empty file"),
    ("-DOCSTART- -X- O\n\n", None, "empty file"),
    (b"a DT O\n\xe9t\xe9 NN O\n", 2, "invalid UTF-8"),
    ("a DT O\n\nb DT O\nc DT B-BAD\n", 4, "tag 'B-BAD' is not in the label set"),
])
def test_conll_errors(tmp_path, content, line, message):
    p = write(tmp_path, "bad.txt", content)
    with raises_at(p, line, message):
        read_conll(p, label_names=["O", "B-X"])


# ------------------------------------------------------------------------------------------------------------
# Label sanity: mixed numeric / non-numeric labels, dev labels train lacks, rare classes
# ------------------------------------------------------------------------------------------------------------

def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_mixed_labels_in_task_folder_train(tmp_path):
    folder = tmp_path / "task"
    p = write(folder, "train.tsv", "a\t0\nb\t1\n\nc\t1\nd\tpositive\ne\t0\n")
    with raises_at(p, 5, r"label 'positive' is not numeric, but labels are 0/1 elsewhere in this file "
                         r"\(first seen at line 1\); expected a numeric label like those: the file mixes numeric "
                         r"and non-numeric labels \(4 numeric vs 1 non-numeric line\(s\); the minority kind"):
        read_task_folder(str(folder))
    # The same through read_task_file (label set inferred) and load_task.
    with raises_at(p, 5, "label 'positive' is not numeric"):
        read_task_file(p, kind="classification", pairwise=False, label_names=None)
    from xtremedistil_tf.data.tasks import load_task
    with raises_at(p, 5, "labels are 0/1 elsewhere"):
        load_task(str(folder))
    # A labels.tsv of 0/1 does not hide it: still the mixed-label error, at the same line.
    write(folder, "labels.tsv", "0\n1\n")
    with raises_at(p, 5, "label 'positive' is not numeric"):
        read_task_folder(str(folder))
    # The numeric kind as the minority: the first numeric label is the odd one.
    p = write(folder, "train.tsv", "a\tpos\nb\tneg\nc\t1\nd\tpos\ne\t0\n")
    (folder / "labels.tsv").unlink()
    with raises_at(p, 3, r"label '1' is numeric, but labels are neg/pos elsewhere in this file \(first seen at "
                         r"line 1\); expected a non-numeric label.*3 non-numeric vs 2 numeric"):
        read_task_folder(str(folder))
    # A tie: the kind first seen later is the odd one (names first here, so the numbers are odd).
    p = write(folder, "train.tsv", "a\tpos\nb\t1\nc\tneg\nd\t0\n")
    with raises_at(p, 2, r"label '1' is numeric.*a tie, so the kind first seen later in the file"):
        read_task_folder(str(folder))
    p = write(folder, "train.tsv", "a\t1\nb\tpos\nc\t0\nd\tneg\n")
    with raises_at(p, 2, r"label 'pos' is not numeric, but labels are 0/1 elsewhere .*first seen at line 1"):
        read_task_folder(str(folder))
    # Decimal numbers are numeric too; pairwise files are checked alike.
    p = write(folder, "pairs.tsv", "a\tb\t0.5\nc\td\t1.5\ne\tf\thigh\n")
    with raises_at(p, 3, r"label 'high' is not numeric, but labels are 0\.5/1\.5 elsewhere"):
        read_task_file(p, kind="classification", pairwise=True, label_names=None)


def test_mixed_labels_skip_bad_lines_and_accepted_cases(tmp_path, caplog):
    folder = tmp_path / "task"
    write(folder, "train.tsv", "a\t0\nb\t1\nc\tpositive\nd\t1\ne\t0\n")
    with caplog.at_level(logging.INFO):
        out = read_task_folder(str(folder), skip_bad_lines=True)
    # The odd line is skipped (and logged), and its label does not become a class.
    assert out["train"].label_names == ["0", "1"] and [e.text_a for e in out["train"].examples] == list("abde")
    assert "skipped 1 bad line(s)" in caplog.text and "line 3: label 'positive' is not numeric" in caplog.text
    # One kind only: fine (numbers, names, and names with digits in them).
    for labels in (["0", "1", "2"], ["neg", "pos", "neutral"], ["1star", "2stars", "5stars"], ["-1", "+1", "1e3"]):
        write(folder, "train.tsv", "".join(f"t{i}\t{x}\n" for i, x in enumerate(labels)))
        assert sorted(read_task_folder(str(folder))["train"].label_names) == sorted(labels)
    # A labels.tsv that itself declares both kinds is the user's choice: no mixed-label error.
    write(folder, "labels.tsv", "0\n1\nother\n")
    write(folder, "train.tsv", "a\t0\nb\t1\nc\tother\n")
    assert read_task_folder(str(folder))["train"].label_names == ["0", "1", "other"]
    # Dev/test files are not training files: a label outside train's set stays the usual error.
    (folder / "labels.tsv").unlink()
    write(folder, "train.tsv", "a\t0\nb\t1\n")
    p = write(folder, "dev.tsv", "a\t1\nb\tpositive\n")
    with raises_at(p, 2, r"label 'positive' is not in the label set \('0', '1'\)"):
        read_task_folder(str(folder))


def test_regression_labels_must_be_numbers(tmp_path):
    # Regression files are exempt from the mixed-label check because a non-number is already an error.
    p = write(tmp_path, "r.tsv", "a\tb\t3.5\nc\td\t1\ne\tf\thigh\n")
    with raises_at(p, 3, "expected a finite number as the regression label, found 'high'"):
        read_task_file(p, kind="regression", pairwise=True, label_names=None)
    p = write(tmp_path / "STS-B", "train.tsv", "sentence1\tsentence2\tscore\nA\tB\t4.5\nC\tD\tsimilar\n")
    with raises_at(p, 3, "expected a number as the regression label, found 'similar'"):
        read_glue("stsb", str(tmp_path))


def test_mixed_labels_in_glue_folder(tmp_path, caplog):
    t = "\t"
    p = write(tmp_path / "SST-2", "train.tsv", f"sentence{t}label\nok{t}1\nbad{t}0\n\nmeh{t}positive\nfine{t}1\n")
    with raises_at(p, 5, r"label 'positive' is not in the label set \(0, 1 = negative, positive\); GLUE sst2 files "
                         r"hold label ids \(0/1\), not names: labels are 0/1 elsewhere in this file "
                         r"\(first seen at line 2\)$"):
        read_glue("sst2", str(tmp_path))
    # A name on the first label line: the task's kind (ids) still decides which label is odd.
    p = write(tmp_path / "SST-2", "train.tsv", f"sentence{t}label\nmeh{t}positive\nok{t}1\n")
    with raises_at(p, 2, r"not in the label set \(0, 1 = negative, positive\); GLUE sst2 files hold label ids "
                         r"\(0/1\), not names$"):
        read_glue("sst2", str(tmp_path))
    # An out-of-range id keeps its message as it was.
    p = write(tmp_path / "SST-2", "train.tsv", f"sentence{t}label\nok{t}1\nbad{t}2\n")
    with raises_at(p, 3, r"label '2' is not in the label set \(0, 1 = negative, positive\)$"):
        read_glue("sst2", str(tmp_path))
    # A task whose files hold names, with an id among them.
    p = write(tmp_path / "QNLI", "train.tsv", "index\tquestion\tsentence\tlabel\n0\tQ\tS\tentailment\n1\tQ\tS\t1\n")
    with raises_at(p, 3, r"label '1' is not in the label set \('entailment', 'not_entailment'\); GLUE qnli files "
                         r"hold label names \(entailment/not_entailment\), not ids: labels are entailment "
                         r"elsewhere in this file \(first seen at line 2\)$"):
        read_glue("qnli", str(tmp_path))
    # With skip_bad_lines the odd line is skipped and logged.
    write(tmp_path / "SST-2", "train.tsv", f"sentence{t}label\nok{t}1\nmeh{t}positive\nbad{t}0\n")
    with caplog.at_level(logging.INFO):
        d = read_glue("sst2", str(tmp_path), splits=["train"], skip_bad_lines=True)["train"]
    assert [e.label for e in d.examples] == [1, 0] and "line 3: label 'positive'" in caplog.text


def test_rare_label_warning(tmp_path, caplog):
    folder = tmp_path / "task"
    p = write(folder, "train.tsv", "".join(f"n{i}\tneg\n" for i in range(6)) + "".join(
        f"p{i}\tpos\n" for i in range(5)) + "typo\tpostive\nx\tneu\ny\tneu\n")
    write(folder, "dev.tsv", "d\tpostive\n")  # dev files are not counted
    with caplog.at_level(logging.INFO):
        out = read_task_folder(str(folder))
    assert out["train"].label_names == ["neg", "neu", "pos", "postive"]
    assert _warnings(caplog) == [f"{p}: 2 labels have fewer than 5 training examples (too few to learn well; a typo "
                                 "in a label?): 'neu' has 2 examples, 'postive' has 1 example"]
    # A class of labels.tsv that train lacks entirely: 0 examples.
    write(folder, "labels.tsv", "neg\npos\nneu\npostive\nmixed\n")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        read_task_folder(str(folder))
    assert "'mixed' has 0 examples" in caplog.text and f"{p}: 3 labels have fewer than 5" in caplog.text
    # Enough of every class: no warning at all.
    p = write(tmp_path, "ok.tsv", "".join(f"t{i}\t{i % 2}\n" for i in range(10)))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        read_task_file(p, kind="classification", pairwise=False, label_names=None)
    assert _warnings(caplog) == []
    # GLUE: train only.
    t = "\t"
    sst = write(tmp_path / "SST-2", "train.tsv", f"sentence{t}label\n" + f"a{t}1\n" * 6 + f"b{t}0\n")
    write(tmp_path / "SST-2", "dev.tsv", f"sentence{t}label\nok{t}1\n")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        read_glue("sst2", str(tmp_path))
    assert _warnings(caplog) == [f"{sst}: 1 label has fewer than 5 training examples (too few to learn well; a "
                                 "typo in a label?): 'negative' has 1 example"]


CONLL_IOB1 = ("-DOCSTART- -X- -X- O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\n\n"
              "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\nand CC O O\nJohn NNP I-NP I-PER\n"
              "Smith NNP I-NP I-PER\n\n"
              "Paris NNP I-NP I-LOC\nLondon NNP I-NP B-LOC\nand CC O O\nthe DT O O\nrest NN O O\n")
CONLL_IOB2 = ("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n"
              "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n")


def test_conll_iob1_and_iob2_load_and_rare_tags_warn(tmp_path, caplog):
    p1 = write(tmp_path, "iob1.txt", CONLL_IOB1)
    with caplog.at_level(logging.INFO):
        d = read_conll(p1)  # I-X starting an entity (IOB1) is valid: no scheme check
    assert d.label_names == ["B-LOC", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O"] and len(d) == 3
    assert d.examples[1].label == (4, 4, 5, 4, 4)
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and warnings[0].startswith(f"{p1}: 5 tags occur fewer than 5 times in the training data")
    assert "'I-PER' occurs 4 times" in warnings[0] and "'B-LOC' occurs 1 time," in warnings[0]
    assert "'O'" not in warnings[0]
    p2 = write(tmp_path, "iob2.txt", CONLL_IOB2)
    d = read_conll(p2)
    assert d.label_names == ["B-MISC", "B-ORG", "B-PER", "I-PER", "O"] and d.examples[1].label == (2, 3)
    # With TFDS' tag list (IOB2) both load too; a split read against a given label set is not a training file.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        d = read_conll(p2, label_names=CONLL2003_TFDS_TAGS)
    assert d.num_labels == 9 and _warnings(caplog) == []
    # Through load_task: the train file warns (tags counted per word), dev does not; a dev tag train lacks is an error.
    folder = tmp_path / "ner"
    write(folder, "train.txt", CONLL_IOB1)
    write(folder, "dev.txt", "Rome NNP I-NP I-LOC\n")
    from xtremedistil_tf.data.tasks import load_task
    caplog.clear()
    with caplog.at_level(logging.INFO):
        task = load_task(str(folder), do_NER=True)
    assert task.label_names == ["B-LOC", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O"]
    assert [m.split(":")[0] for m in _warnings(caplog)] == [str(folder / "train.txt")]
    dev = write(folder, "dev.txt", "Rome NNP B-NP B-PER\n")
    with raises_at(dev, 1, r"tag 'B-PER' is not in the label set"):
        load_task(str(folder), do_NER=True)


def test_ner_task_folder_rare_tags(tmp_path, caplog):
    folder = tmp_path / "ner"
    p = write(folder, "train.tsv", "a b c\tO I-X I-X\nd e\tO O\n" * 3)
    write(folder, "labels.tsv", "O\nB-X\nI-X\n")
    with caplog.at_level(logging.INFO):
        out = read_task_folder(str(folder), do_NER=True)
    assert out["train"].examples[0].label == (0, 2, 2)
    assert _warnings(caplog) == [f"{p}: 1 tag occurs fewer than 5 times in the training data (too few to learn "
                                 "well; a typo in a label?): 'B-X' occurs 0 times"]


# ------------------------------------------------------------------------------------------------------------
# TFDS (mocked, offline)
# ------------------------------------------------------------------------------------------------------------

tfds = pytest.importorskip("tensorflow_datasets")


def test_tfds_glue_mock():
    with tfds.testing.mock_data(num_examples=6):
        d = read_tfds("glue/sst2", "train")
        assert d.kind == "classification" and not d.pairwise and len(d) == 6
        assert d.label_names == list(GLUE_LABEL_NAMES["sst2"]) and d.path == "tfds:glue/sst2/train"
        assert all(isinstance(e.text_a, str) and e.label in (0, 1) and isinstance(e.idx, int) for e in d.examples)
        m = read_tfds("glue/mnli", "dev_matched")
        assert m.pairwise and m.label_names == ["entailment", "neutral", "contradiction"]
        assert m.path == "tfds:glue/mnli/validation_matched"
        s = read_tfds("glue/stsb", "dev")
        assert s.kind == "regression" and s.label_names is None and isinstance(s.examples[0].label, float)
        for task in ("cola", "mrpc", "qqp", "qnli", "rte", "wnli"):
            t = read_tfds(f"glue/{task}", "train")
            assert t.label_names == list(GLUE_LABEL_NAMES[task]) and t.pairwise == (task != "cola")


def test_tfds_conll2003_mock():
    import numpy as np
    import tensorflow as tf

    def consistent(self, *args, **kwargs):  # tokens and tags of equal length, as the real data
        rows = [{"tokens": np.array([b"EU", b"rejects", b"it"], dtype=object), "pos": np.array([1, 2, 3]),
                 "chunks": np.array([1, 2, 3]), "ner": np.array([3, 0, 0])}] * 4
        return tf.data.Dataset.from_generator(
            lambda: iter(rows), output_signature={
                "tokens": tf.TensorSpec([None], tf.string), "pos": tf.TensorSpec([None], tf.int64),
                "chunks": tf.TensorSpec([None], tf.int64), "ner": tf.TensorSpec([None], tf.int64)})

    with tfds.testing.mock_data(num_examples=4, as_dataset_fn=consistent):
        d = read_tfds("conll2003", "dev")
        assert read_tfds("conll2003", "validation").path == "tfds:conll2003/dev"
    assert d.kind == "ner" and d.label_names == list(CONLL2003_TFDS_TAGS) and len(d) == 4
    assert d.examples[0] == Example(("EU", "rejects", "it"), None, (3, 0, 0), 0)
    # The stock mock draws token and tag sequences of unrelated lengths: that must be reported, not trimmed.
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(DataError, match=r"tfds:conll2003/train:\d+: NER example has \d+ token"):
            read_tfds("conll2003", "train")


def test_tfds_labels_unaffected_by_label_checks(caplog):
    """TFDS labels are ClassLabel ids: no mixed-label check applies; train splits only get the rare-label warning."""
    with tfds.testing.mock_data(num_examples=6):
        with caplog.at_level(logging.INFO):
            d = read_tfds("glue/sst2", "train")
        assert d.label_names == ["negative", "positive"] and len(d) == 6
        assert all(e.label in (0, 1) for e in d.examples)
        counts = [sum(e.label == i for e in d.examples) for i in (0, 1)]
        warned = [m for m in _warnings(caplog) if m.startswith("tfds:glue/sst2/train:")]
        assert bool(warned) == any(c < 5 for c in counts)  # 6 examples: at least one class has fewer than 5
        caplog.clear()
        with caplog.at_level(logging.INFO):
            dev = read_tfds("glue/sst2", "dev")
            s = read_tfds("glue/stsb", "train")  # regression: never a rare-label warning
        assert len(dev) == 6 and s.kind == "regression"
        assert [m for m in _warnings(caplog) if m.startswith("tfds:")] == []  # (TFDS' own mock warns otherwise)


# ------------------------------------------------------------------------------------------------------------
# The real files (skipped when ../shared/data is absent)
# ------------------------------------------------------------------------------------------------------------

def test_real_glue(shared_data_dir):
    glue = shared_data_dir / "glue"
    sst2 = read_glue("sst2", str(glue))
    assert len(sst2["train"]) == 67349 and len(sst2["dev"]) == 872 and len(sst2["test"]) == 1821
    assert {e.label for e in sst2["dev"].examples} == {0, 1} and sst2["test"].examples[5].idx == 5
    cola = read_glue("cola", str(glue), splits=["dev"])
    assert len(cola["dev"]) == 1043
    stsb = read_glue("stsb", str(glue), splits=["dev"])["dev"]
    assert len(stsb) == 1500 and stsb.kind == "regression"
    scores = [e.label for e in stsb.examples]
    assert all(isinstance(s, float) and 0.0 <= s <= 5.0 for s in scores) and len(set(scores)) > 50
    assert any(s != int(s) for s in scores)  # fractional scores kept
    qnli = read_glue("qnli", str(glue), splits=["dev"])["dev"]
    assert len(qnli) == 5463 and qnli.pairwise and all(e.text_b for e in qnli.examples)
    assert {e.label for e in qnli.examples} == {0, 1}


def test_real_conll(shared_data_dir):
    tags = {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"}
    for split, n in (("train", 14041), ("dev", 3250), ("test", 3453)):
        d = read_conll(str(shared_data_dir / "conll2003" / f"{split}.txt"))
        assert len(d) == n, split
        assert set(d.label_names) == tags
        assert all(len(e.text_a) == len(e.label) for e in d.examples)


def test_real_task_folder(shared_data_dir):
    folder = shared_data_dir / "tasks" / "sst2-small"
    out = read_task_folder(str(folder))
    assert [len(out[s]) for s in ("train", "dev", "test")] == [2000, 436, 436]
    assert out["train"].label_names == ["0", "1"]
    transfer = str(folder / "transfer.tsv")
    assert count_lines(transfer) == 8000 and sum(1 for _ in iter_transfer_file(transfer)) == 8000
