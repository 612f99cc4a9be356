"""Tests for xtremedistil_tf.metrics: hand-worked cases, agreement with sklearn / scipy, and the conlleval port
checked against seqeval and (optionally) the conlleval script."""
from __future__ import annotations

import csv
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from xtremedistil_tf import metrics as M

def test_import_is_light():
    # sklearn and scipy are imported when a score is first computed, TensorFlow never
    code = (
        "import sys, xtremedistil_tf.metrics; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy', 'tensorflow')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


# ---------------------------------------------------------------------------------------------------------
# accuracy / f1 / mcc: hand-computed
# ---------------------------------------------------------------------------------------------------------


def test_accuracy_hand():
    # 3 of 4 equal
    assert M.accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75


def test_f1_hand():
    # true 1 1 0 0 1 / pred 1 0 1 0 1: tp=2 (pos 0, 4), fp=1 (pos 2), fn=1 (pos 1) -> P=R=2/3 -> F1=2/3
    assert M.f1([1, 1, 0, 0, 1], [1, 0, 1, 0, 1]) == pytest.approx(2 / 3)
    # no positive label and no positive prediction: 0/0, defined as 0 (sklearn's zero_division default)
    assert M.f1([0, 0, 0], [0, 0, 0]) == 0.0
    # all predictions wrong-way: tp=0 -> 0
    assert M.f1([1, 0], [0, 1]) == 0.0


def test_mcc_binary_hand():
    # true 1 1 1 0 0 0 / pred 1 1 0 0 0 1: tp=2 tn=2 fp=1 fn=1
    # MCC = (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (4-1)/sqrt(3*3*3*3) = 3/9 = 1/3
    assert M.matthews_corrcoef([1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 1]) == pytest.approx(1 / 3)
    assert M.matthews_corrcoef([0, 1, 0, 1], [0, 1, 0, 1]) == pytest.approx(1.0)
    assert M.matthews_corrcoef([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)


def test_mcc_multiclass_hand():
    # true 0 0 1 1 2 2 / pred 0 1 1 1 2 0 -> confusion (rows = true): [[1,1,0],[0,2,0],[1,0,1]]
    # t_sum = [2,2,2], p_sum = [2,3,1], correct c = 4, samples s = 6
    # cov(yt,yp) = c*s - t.p = 24 - (4+6+2) = 12; cov(yp,yp) = s^2 - p.p = 36 - 14 = 22; cov(yt,yt) = 36 - 12 = 24
    # MCC = 12 / sqrt(24*22) = 12 / sqrt(528) ~= 0.52223
    assert M.matthews_corrcoef([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]) == pytest.approx(12 / math.sqrt(528))


def test_mcc_degenerate_is_zero():
    # one predicted class only: cov(yp,yp) = 0 -> undefined, 0.0 as sklearn
    assert M.matthews_corrcoef([0, 1, 1, 0], [1, 1, 1, 1]) == 0.0
    assert M.matthews_corrcoef([1, 1, 1], [1, 1, 1]) == 0.0


def test_mcc_string_labels():
    # works on any comparable labels, same as on ids
    assert M.matthews_corrcoef(list("aabbcc"), list("abbbca")) == pytest.approx(12 / math.sqrt(528))


def test_shape_and_length_errors():
    with pytest.raises(ValueError, match="3 labels but 2 predictions"):
        M.accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="1-D"):
        M.f1([0, 1], [[0.2, 0.8], [0.9, 0.1]])
    with pytest.raises(ValueError, match="no examples"):
        M.matthews_corrcoef([], [])
    with pytest.raises(ValueError, match="at least 2"):
        M.pearson([1.0], [2.0])


# ---------------------------------------------------------------------------------------------------------
# pearson / spearman: hand-computed
# ---------------------------------------------------------------------------------------------------------


def test_pearson_hand():
    # x = 1 2 3 (centred -1 0 1), y = 2 4 7 (mean 13/3, centred -7/3 -1/3 8/3)
    # r = (7/3 + 8/3) / (sqrt(2) * sqrt(49+1+64)/3) = 5 / (sqrt(2)*sqrt(114)/3) = 15/sqrt(228) ~= 0.99340
    assert M.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(15 / math.sqrt(228))
    assert M.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_spearman_ties_hand():
    # x = 1 2 2 3 -> average ranks 1 2.5 2.5 4; y = 1 3 2 4 -> ranks 1 3 2 4 (both mean 2.5)
    # centred: x -1.5 0 0 1.5, y -1.5 .5 -.5 1.5; dot = 4.5; |x|^2 = 4.5, |y|^2 = 5 -> rho = sqrt(0.9) ~= 0.94868
    assert M.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    # monotone but non-linear: rho = 1 while pearson < 1
    assert M.spearman([1, 2, 3, 4], [1, 8, 27, 1000]) == pytest.approx(1.0)


def test_correlation_degenerate():
    # scipy gives nan for a constant input; we give 0.0 (documented); nan in the input -> nan
    assert M.pearson([1, 1, 1], [1, 2, 3]) == 0.0
    assert M.spearman([1, 2, 3], [5, 5, 5]) == 0.0
    assert math.isnan(M.pearson([1, float("nan"), 3], [1, 2, 3]))
    assert math.isnan(M.spearman([1, float("nan"), 3], [1, 2, 3]))


# ---------------------------------------------------------------------------------------------------------
# Against sklearn and scipy on random inputs
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_against_sklearn(seed):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    t, p = rng.integers(0, 2, n), rng.integers(0, 2, n)
    agree = rng.random(n) < 0.6  # correlate predictions with labels so scores are not all near 0
    p = np.where(agree, t, p)
    assert M.accuracy(t, p) == pytest.approx(skm.accuracy_score(t, p), abs=1e-12)
    assert M.f1(t, p) == pytest.approx(skm.f1_score(t, p, zero_division=0), abs=1e-12)
    assert M.matthews_corrcoef(t, p) == pytest.approx(skm.matthews_corrcoef(t, p), abs=1e-12)
    k = int(rng.integers(3, 6))
    t, p = rng.integers(0, k, n), rng.integers(0, k, n)
    p = np.where(rng.random(n) < 0.5, t, p)
    assert M.accuracy(t, p) == pytest.approx(skm.accuracy_score(t, p), abs=1e-12)
    assert M.matthews_corrcoef(t, p) == pytest.approx(skm.matthews_corrcoef(t, p), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_against_scipy(seed):
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(3, 200))
    x = rng.normal(size=n)
    y = 0.7 * x + rng.normal(size=n)
    assert M.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-10)
    assert M.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-10)
    # many ties: small integer ranges on both sides
    xi = rng.integers(0, 5, n).astype(float)
    yi = np.clip(xi + rng.integers(-2, 3, n), 0, 5)
    if np.ptp(xi) > 0 and np.ptp(yi) > 0:
        assert M.pearson(xi, yi) == pytest.approx(stats.pearsonr(xi, yi)[0], abs=1e-10)
        assert M.spearman(xi, yi) == pytest.approx(stats.spearmanr(xi, yi)[0], abs=1e-10)


# ---------------------------------------------------------------------------------------------------------
# glue_metrics / main_metric
# ---------------------------------------------------------------------------------------------------------


def test_glue_metrics_keys_and_values():
    labels = [1, 1, 0, 0, 1]
    preds = [1, 0, 1, 0, 1]  # acc 3/5, f1 2/3 (see test_f1_hand)
    for task in ("mrpc", "qqp"):
        m = M.glue_metrics(task, preds, labels)
        assert set(m) == {"f1", "accuracy", "acc_and_f1"}
        assert m["accuracy"] == pytest.approx(0.6)
        assert m["f1"] == pytest.approx(2 / 3)
        assert m["acc_and_f1"] == pytest.approx((0.6 + 2 / 3) / 2)
    for task in ("sst2", "qnli", "rte", "wnli", "mnli", "mnli_matched", "mnli_mismatched", "MNLI-MM", "SST-2"):
        assert M.glue_metrics(task, preds, labels) == {"accuracy": pytest.approx(0.6)}
    m = M.glue_metrics("cola", [1, 1, 0, 0, 0, 1], [1, 1, 1, 0, 0, 0])
    assert m == {"mcc": pytest.approx(1 / 3)}
    m = M.glue_metrics("stsb", [2, 4, 7], [1, 2, 3])
    assert set(m) == {"pearson", "spearman", "corr"}
    assert m["pearson"] == pytest.approx(15 / math.sqrt(228))
    assert m["spearman"] == pytest.approx(1.0)
    assert m["corr"] == pytest.approx((15 / math.sqrt(228) + 1.0) / 2)
    assert all(isinstance(v, float) for v in m.values())


def test_glue_metrics_logits_and_score_columns():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0], [1.0, 0.5, 0.2]])  # argmax 1 0 2 0
    assert M.glue_metrics("mnli", logits, [1, 0, 2, 1]) == {"accuracy": 0.75}
    # STS-B regression heads output (n, 1)
    m = M.glue_metrics("sts-b", np.array([[2.0], [4.0], [7.0]]), [1.0, 2.0, 3.0])
    assert m["pearson"] == pytest.approx(15 / math.sqrt(228))
    # integral floats are accepted as ids, fractional floats are refused for classification
    assert M.glue_metrics("rte", np.array([0.0, 1.0]), [0, 1]) == {"accuracy": 1.0}
    with pytest.raises(ValueError, match="not class ids"):
        M.glue_metrics("rte", np.array([0.2, 0.9]), [0, 1])
    with pytest.raises(ValueError, match="one column per class"):
        M.glue_metrics("rte", np.array([[0.2], [0.9]]), [0, 1])


def test_unknown_task_and_main_metric():
    with pytest.raises(ValueError, match="unknown task 'boolq'"):
        M.glue_metrics("boolq", [0], [0])
    with pytest.raises(ValueError, match="unknown task"):
        M.main_metric("boolq")
    with pytest.raises(ValueError, match="scored with metrics.squad"):
        M.glue_metrics("squad", [0], [0])
    assert M.main_metric("squad") == M.main_metric("squad_v2") == M.main_metric("qa") == "f1"
    assert M.main_metric("cola") == "mcc"
    assert M.main_metric("stsb") == "pearson"
    assert M.main_metric("mrpc") == "f1"
    assert M.main_metric("qqp") == "f1"
    assert M.main_metric("ner") == "f1"
    for task in ("sst2", "qnli", "rte", "wnli", "mnli", "mnli_mismatched", "glue/mnli_matched"):
        assert M.main_metric(task) == "accuracy"
    with pytest.raises(ValueError, match="goes with a task kind"):
        M.main_metric("cola", "sst2")
    # the main metric is always one of the keys glue_metrics returns
    for task in M.GLUE_TASKS:
        preds, labels = ([0.5, 1.5, 2.0], [1.0, 1.0, 2.5]) if task == "stsb" else ([0, 1, 1], [0, 1, 0])
        assert M.main_metric(task) in M.glue_metrics(task, preds, labels)


def test_main_metric_of_a_kind():
    # how the trainers call it: the task kind, and the GLUE task when there is one
    assert M.main_metric("ner") == M.main_metric("ner", "") == "f1"
    assert M.main_metric("regression") == M.main_metric("regression", "stsb") == "pearson"
    assert M.main_metric("classification") == "accuracy"
    assert M.main_metric("classification", "cola") == "mcc" and M.main_metric("classification", "MRPC") == "f1"
    with pytest.raises(ValueError, match="unknown task 'boolq'"):
        M.main_metric("classification", "boolq")


def test_score_logits():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])  # argmax 0 1 0 1
    labels = np.array([0, 1, 1, 1])
    assert M.score_logits("classification", logits, labels) == {"accuracy": 0.75}
    m = M.score_logits("classification", logits, labels, glue_task="mrpc")
    assert m == {"accuracy": 0.75, "f1": pytest.approx(0.8), "acc_and_f1": pytest.approx(0.775)}
    m = M.score_logits("regression", np.array([[2.0], [4.0], [7.0]]), np.array([1.0, 2.0, 3.0]))
    assert m["pearson"] == pytest.approx(15 / math.sqrt(228)) and m["spearman"] == pytest.approx(1.0)
    assert m["corr"] == pytest.approx((m["pearson"] + m["spearman"]) / 2)
    # NER: positions labelled -1 (continuation sub-tokens, padding) are not scored; ids past the names read as O
    names = ["O", "B-PER", "I-PER"]
    tag_logits = np.eye(4)[np.array([[1, 2, 0, 3], [0, 2, 1, 0]])]  # I-PER after O opens a chunk (IOB1)
    tag_labels = np.array([[1, 2, -1, 0], [0, 1, -1, -1]])
    m = M.score_logits("ner", tag_logits, tag_labels, label_names=names)
    assert m == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "accuracy": pytest.approx(4 / 5)}


# ---------------------------------------------------------------------------------------------------------
# write_glue_predictions
# ---------------------------------------------------------------------------------------------------------


def _read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t"))


def test_write_glue_predictions_round_trip(tmp_path):
    names = ["entailment", "neutral", "contradiction"]
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    path = tmp_path / "out" / "MNLI-m.tsv"
    M.write_glue_predictions(str(path), "mnli_matched", logits, names)
    rows = _read_tsv(path)
    assert rows == [["index", "prediction"], ["0", "neutral"], ["1", "entailment"], ["2", "contradiction"]]
    assert os.listdir(path.parent) == ["MNLI-m.tsv"]  # no temporary left behind

    # SST-2 is submitted as 0/1 even when names are known
    path = tmp_path / "SST-2.tsv"
    M.write_glue_predictions(str(path), "sst2", [1, 0, 1], ["negative", "positive"])
    assert _read_tsv(path)[1:] == [["0", "1"], ["1", "0"], ["2", "1"]]

    # STS-B floats come back exactly
    scores = np.array([0.0, 3.14159265358979, 4.999999, 1e-7])
    path = tmp_path / "STS-B.tsv"
    M.write_glue_predictions(str(path), "stsb", scores, None)
    rows = _read_tsv(path)
    assert rows[0] == ["index", "prediction"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2, 3]
    np.testing.assert_array_equal([float(r[1]) for r in rows[1:]], scores)

    # explicit indices
    path = tmp_path / "RTE.tsv"
    M.write_glue_predictions(str(path), "rte", [1, 0], ["entailment", "not_entailment"], index=[7, 9])
    assert _read_tsv(path)[1:] == [["7", "not_entailment"], ["9", "entailment"]]


def test_write_glue_predictions_errors(tmp_path):
    path = tmp_path / "RTE.tsv"
    with pytest.raises(ValueError, match="needs label_names"):
        M.write_glue_predictions(str(path), "rte", [0, 1], None)
    with pytest.raises(ValueError, match="class id 2 has no name"):
        M.write_glue_predictions(str(path), "rte", [0, 2], ["entailment", "not_entailment"])
    with pytest.raises(ValueError, match="2 indices but 3 predictions"):
        M.write_glue_predictions(str(path), "cola", [0, 1, 1], None, index=[0, 1])
    assert not os.listdir(tmp_path)  # nothing written, no temporaries


# ---------------------------------------------------------------------------------------------------------
# NER: get_entities (conlleval's chunk rules)
# ---------------------------------------------------------------------------------------------------------


def test_get_entities_iob2_and_iob1():
    assert M.get_entities(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    # IOB1: an entity that starts with I- (after O) is a chunk
    assert M.get_entities(["O", "I-PER", "I-PER", "O"]) == [("PER", 1, 2)]
    assert M.get_entities(["I-PER"]) == [("PER", 0, 0)]
    # I-PER after B-LOC: the type changes, so the LOC chunk ends and a PER chunk starts
    assert M.get_entities(["B-LOC", "I-PER"]) == [("LOC", 0, 0), ("PER", 1, 1)]
    # B- always starts a chunk: B-PER B-PER is two chunks; IOB1 I-PER B-PER as well
    assert M.get_entities(["B-PER", "B-PER"]) == [("PER", 0, 0), ("PER", 1, 1)]
    assert M.get_entities(["I-PER", "B-PER", "I-PER"]) == [("PER", 0, 0), ("PER", 1, 2)]
    assert M.get_entities(["O", "O"]) == []
    assert M.get_entities([]) == []
    # hyphens inside the type: split at the first '-' only
    assert M.get_entities(["B-MISC-X", "I-MISC-X"]) == [("MISC-X", 0, 1)]


def test_get_entities_e_and_s_tags():
    # IOBES: S-PER; B-LOC E-LOC
    assert M.get_entities(["S-PER", "B-LOC", "E-LOC", "O"]) == [("PER", 0, 0), ("LOC", 1, 2)]
    # E-X E-X (IOE): E after E starts a new chunk
    assert M.get_entities(["I-NP", "E-NP", "E-NP"]) == [("NP", 0, 1), ("NP", 2, 2)]
    # conlleval has no S- rules: two S-PER in a row (same type) are ONE chunk there, and so here
    assert M.get_entities(["S-PER", "S-PER"]) == [("PER", 0, 1)]


def test_get_entities_rejects_non_strings():
    with pytest.raises(TypeError, match="tags must be strings"):
        M.get_entities([0, 1, 2])


# ---------------------------------------------------------------------------------------------------------
# NER: ner_metrics, hand-worked against conlleval's rules
# ---------------------------------------------------------------------------------------------------------


def test_ner_i_without_b_counts_as_chunk():
    # gold I-PER I-PER O (IOB1) vs predicted B-PER I-PER O: both have the chunk PER[0..1] -> 1 correct of 1
    # token accuracy: token 0 differs (I vs B) -> 2/3
    m = M.ner_metrics([["I-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]])
    assert (m["found_correct"], m["found_guessed"], m["correct_chunks"], m["tokens"]) == (1, 1, 1, 3)
    assert m["precision"] == m["recall"] == m["f1"] == 1.0
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_ner_type_change_starts_new_chunk():
    # gold B-LOC I-PER = LOC[0] + PER[1]; predicted B-LOC I-LOC = LOC[0..1]: the LOC spans differ -> 0 correct
    # P = 0/1, R = 0/2; accuracy: token 1 (I-PER vs I-LOC) differs -> 1/2
    m = M.ner_metrics([["B-LOC", "I-PER"]], [["B-LOC", "I-LOC"]])
    assert (m["found_correct"], m["found_guessed"], m["correct_chunks"]) == (2, 1, 0)
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)
    assert m["accuracy"] == 0.5


def test_ner_b_b_is_two_chunks():
    # gold B-PER B-PER = 2 chunks; predicted B-PER I-PER = 1 chunk PER[0..1], which matches neither
    m = M.ner_metrics([["B-PER", "B-PER"]], [["B-PER", "I-PER"]])
    assert (m["found_correct"], m["found_guessed"], m["correct_chunks"]) == (2, 1, 0)
    # and the other way round both gold chunks are found
    m = M.ner_metrics([["B-PER", "B-PER"]], [["B-PER", "B-PER"]])
    assert (m["found_correct"], m["found_guessed"], m["correct_chunks"]) == (2, 2, 2)
    assert m["f1"] == 1.0


def test_ner_type_mismatch_is_wrong():
    # same span, wrong type: gold PER[0..1], predicted ORG[0..1] -> 0 correct
    # per type: ORG P = 0/1 = 0, R = 0 (no gold ORG); PER P = 0 (none predicted), R = 0/1
    m = M.ner_metrics([["B-PER", "I-PER", "O"]], [["B-ORG", "I-ORG", "O"]])
    assert (m["found_correct"], m["found_guessed"], m["correct_chunks"]) == (1, 1, 0)
    assert m["f1"] == 0.0
    assert m["per_type"] == {
        "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "found_correct": 0, "found_guessed": 1, "correct_chunks": 0},
        "PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "found_correct": 1, "found_guessed": 0, "correct_chunks": 0},
    }
    assert m["accuracy"] == pytest.approx(1 / 3)  # only the O matches


def test_ner_partial_spans_are_wrong():
    # predicted span too short: gold PER[0..2], predicted PER[0..1]
    m = M.ner_metrics([["B-PER", "I-PER", "I-PER"]], [["B-PER", "I-PER", "O"]])
    assert (m["found_correct"], m["found_guessed"], m["correct_chunks"]) == (1, 1, 0)
    # predicted span too long: gold PER[0], predicted PER[0..1]
    m = M.ner_metrics([["B-PER", "O"]], [["B-PER", "I-PER"]])
    assert (m["found_correct"], m["found_guessed"], m["correct_chunks"]) == (1, 1, 0)
    # predicted span starts late: gold PER[0..1], predicted PER[1]
    m = M.ner_metrics([["B-PER", "I-PER"]], [["O", "B-PER"]])
    assert (m["found_correct"], m["found_guessed"], m["correct_chunks"]) == (1, 1, 0)


def test_ner_per_type_and_micro_average():
    gold = [
        ["B-PER", "I-PER", "O", "B-LOC", "O"],
        ["B-ORG", "I-ORG", "O", "B-PER"],
        ["O", "O", "B-LOC"],
    ]
    pred = [
        ["B-PER", "I-PER", "O", "B-ORG", "O"],
        ["B-ORG", "I-ORG", "O", "B-PER"],
        ["B-LOC", "O", "B-LOC"],
    ]
    # gold chunks: PER s0[0..1], LOC s0[3], ORG s1[0..1], PER s1[3], LOC s2[2]          -> 5 (PER 2, LOC 2, ORG 1)
    # predicted:   PER s0[0..1], ORG s0[3], ORG s1[0..1], PER s1[3], LOC s2[0], LOC s2[2] -> 6 (PER 2, ORG 2, LOC 2)
    # correct:     PER s0, ORG s1, PER s1, LOC s2[2]                                    -> 4 (PER 2, ORG 1, LOC 1)
    # micro P = 4/6, R = 4/5, F1 = 2PR/(P+R) = (16/15)/(22/15) = 8/11
    # PER: P = R = F = 1; ORG: P = 1/2, R = 1/1, F = 2/3; LOC: P = 1/2, R = 1/2, F = 1/2
    # tokens 5+4+3 = 12, two differ (s0[3], s2[0]) -> accuracy 10/12
    m = M.ner_metrics(gold, pred)
    assert (m["found_correct"], m["found_guessed"], m["correct_chunks"], m["tokens"]) == (5, 6, 4, 12)
    assert m["precision"] == pytest.approx(4 / 6)
    assert m["recall"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(8 / 11)
    assert m["accuracy"] == pytest.approx(10 / 12)
    assert list(m["per_type"]) == ["LOC", "ORG", "PER"]  # sorted, as conlleval prints them
    pt = m["per_type"]
    assert (pt["PER"]["precision"], pt["PER"]["recall"], pt["PER"]["f1"]) == (1.0, 1.0, 1.0)
    assert (pt["ORG"]["precision"], pt["ORG"]["recall"]) == (0.5, 1.0)
    assert pt["ORG"]["f1"] == pytest.approx(2 / 3)
    assert (pt["LOC"]["precision"], pt["LOC"]["recall"], pt["LOC"]["f1"]) == (0.5, 0.5, 0.5)
    assert (pt["LOC"]["found_correct"], pt["LOC"]["found_guessed"], pt["LOC"]["correct_chunks"]) == (2, 2, 1)


def test_ner_sentence_break_ends_chunks():
    # conlleval reads a blank line between sentences as O/O: B-PER | I-PER over a break is two chunks
    m = M.ner_metrics([["B-PER"], ["I-PER"]], [["B-PER"], ["I-PER"]])
    assert (m["found_correct"], m["found_guessed"], m["correct_chunks"], m["tokens"]) == (2, 2, 2, 2)
    # in one sentence it is one chunk
    m = M.ner_metrics([["B-PER", "I-PER"]], [["B-PER", "I-PER"]])
    assert (m["found_correct"], m["found_guessed"], m["correct_chunks"]) == (1, 1, 1)


def test_ner_no_predicted_entities():
    # nothing predicted: P = 0 (0/0 defined as 0 by conlleval), R = 0/1, F = 0; accuracy 1/2
    m = M.ner_metrics([["B-PER", "O"]], [["O", "O"]])
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)
    assert m["accuracy"] == 0.5
    assert m["per_type"]["PER"]["precision"] == 0.0
    # no entities at all on either side
    m = M.ner_metrics([["O", "O"]], [["O", "O"]])
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"]) == (0.0, 0.0, 0.0, 1.0)
    assert m["per_type"] == {}
    # no sentences
    m = M.ner_metrics([], [])
    assert (m["f1"], m["accuracy"], m["tokens"]) == (0.0, 0.0, 0)


def test_ner_length_mismatch_errors():
    with pytest.raises(ValueError, match="2 gold sentences but 1 predicted"):
        M.ner_metrics([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 1 has 2 gold tags but 1 predicted"):
        M.ner_metrics([["O"], ["B-PER", "O"]], [["O"], ["B-PER"]])


@pytest.mark.parametrize("scheme", ["iob2", "iob1", "iobes"])
def test_ner_counts_agree_with_entity_sets(scheme):
    # For IOB/IOBES tags, conlleval's counts equal set arithmetic on the chunks get_entities finds
    # (with odd tags such as '.', '[' or typeless ones they need not: conlleval's own bookkeeping rules).
    rng = np.random.default_rng(7)
    types = ["PER", "LOC", "ORG"]
    prefixes = ("B", "I", "E", "S") if scheme == "iobes" else ("B", "I")
    tagset = ["O"] + [f"{p}-{t}" for p in prefixes for t in types]

    def sample():
        tags = list(rng.choice(tagset, size=int(rng.integers(1, 12))))
        if scheme == "iob2":  # repair to IOB2: an I-X must follow B-X or I-X
            for i, t in enumerate(tags):
                if t.startswith("I-") and (i == 0 or tags[i - 1][2:] != t[2:]):
                    tags[i] = "B-" + t[2:]
        return tags

    for _ in range(30):
        gold = [sample() for _ in range(4)]
        # predictions: the gold tags with about a quarter of them replaced at random
        pred = [[t if rng.random() < 0.75 else str(rng.choice(tagset)) for t in g] for g in gold]
        g_ents = {(s, *e) for s, seq in enumerate(gold) for e in M.get_entities(seq)}
        p_ents = {(s, *e) for s, seq in enumerate(pred) for e in M.get_entities(seq)}
        m = M.ner_metrics(gold, pred)
        assert m["found_correct"] == len(g_ents)
        assert m["found_guessed"] == len(p_ents)
        assert m["correct_chunks"] == len(g_ents & p_ents)


# ---------------------------------------------------------------------------------------------------------
# Optional: against the real conlleval perl script (set CONLLEVAL=/path/to/conlleval.pl to run)
# ---------------------------------------------------------------------------------------------------------

_SUMMARY = re.compile(r"processed (\d+) tokens with (\d+) phrases; found: (\d+) phrases; correct: (\d+)\.")
_TYPE_LINE = re.compile(r"^\s*(.*?): precision:\s*([\d.]+)%; recall:\s*([\d.]+)%; FB1:\s*([\d.]+)\s+(\d+)$")


def _run_conlleval(script, gold, pred):
    text = "".join("".join(f"w {g} {p}\n" for g, p in zip(gs, ps)) + "\n" for gs, ps in zip(gold, pred))
    out = subprocess.run(["perl", script], input=text, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    tokens, found_correct, found_guessed, correct = map(int, _SUMMARY.match(lines[0]).groups())
    acc = float(re.search(r"accuracy:\s*([\d.]+)%", lines[1]).group(1)) if tokens else None
    per_type = {}
    for line in lines[2 if tokens else 1 :]:
        t, p, r, f, g = _TYPE_LINE.match(line).groups()
        per_type[t] = (float(p), float(r), float(f), int(g))
    return tokens, found_correct, found_guessed, correct, acc, per_type


def test_against_conlleval_script():
    script = os.environ.get("CONLLEVAL")
    if not script or not os.path.isfile(script) or not shutil.which("perl"):
        pytest.skip("set CONLLEVAL=/path/to/conlleval.pl (and have perl) to compare with the reference script")
    rng = np.random.default_rng(2000)
    tagsets = [
        ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
        ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"],
        ["O", "B", "I", "E", "S", "[", "]", ".", "[-NP", "]-NP", ".-NP", "I-NP", "B-A-B", "I-0", "O-PER"],
    ]
    for tagset in tagsets:
        for _ in range(40):
            lens = rng.integers(0, 9, size=int(rng.integers(1, 5)))
            gold = [list(rng.choice(tagset, size=n)) for n in lens]
            pred = [list(rng.choice(tagset, size=n)) for n in lens]
            tokens, fc, fg, cc, acc, per_type = _run_conlleval(script, gold, pred)
            m = M.ner_metrics(gold, pred)
            assert (m["tokens"], m["found_correct"], m["found_guessed"], m["correct_chunks"]) == (tokens, fc, fg, cc)
            if tokens:
                assert abs(100 * m["accuracy"] - acc) <= 0.0051
            assert list(m["per_type"]) == list(per_type)
            for t, (p, r, f, g) in per_type.items():
                ours = m["per_type"][t]
                assert ours["found_guessed"] == g
                assert abs(100 * ours["precision"] - p) <= 0.0051
                assert abs(100 * ours["recall"] - r) <= 0.0051
                assert abs(100 * ours["f1"] - f) <= 0.0051
            # get_entities finds one chunk per conlleval chunk start
            assert sum(len(M.get_entities(s)) for s in gold) == fc
            assert sum(len(M.get_entities(s)) for s in pred) == fg


# ---------------------------------------------------------------------------------------------------------
# NER: against seqeval (its default mode follows conlleval's chunk rules for B-/I-/O tags)
# ---------------------------------------------------------------------------------------------------------

# Real-looking sentences (CoNLL-2003 style) with a prediction each: IOB2 and IOB1 tags (chunks that start with
# I-), type changes inside a span, B- after B-, spans too short / too long / shifted, missed and invented chunks.
_NER_CASES = [
    # IOB2, all right
    (["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"],
     ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]),
    # IOB2: a span cut short, a wrong type, a missed chunk
    (["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC", "O", "B-ORG"],
     ["B-PER", "O", "O", "B-ORG", "I-ORG", "I-ORG", "O", "O"]),
    # IOB1 gold (chunks start with I-; B- only between two chunks of one type) vs IOB2 prediction
    (["I-ORG", "I-ORG", "O", "I-PER", "B-PER", "O", "I-LOC"],
     ["B-ORG", "I-ORG", "O", "B-PER", "B-PER", "O", "B-LOC"]),
    # IOB1 prediction against IOB2 gold, with a type change inside a span and an invented chunk
    (["B-PER", "I-PER", "I-PER", "O", "O", "B-MISC", "I-MISC"],
     ["I-PER", "I-PER", "I-LOC", "O", "I-ORG", "I-MISC", "I-MISC"]),
    # B- after B- of one type is two chunks; I- after B- of another type starts a chunk
    (["B-LOC", "B-LOC", "O", "B-ORG", "I-ORG"],
     ["B-LOC", "I-LOC", "O", "B-ORG", "I-PER"]),
    # no entity in gold, some predicted; and a sentence with no entity at all
    (["O", "O", "O", "O"], ["O", "B-MISC", "I-MISC", "O"]),
    (["O", "O"], ["O", "O"]),
    # a span shifted by one, and a chunk running to the end of the sentence
    (["O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC"],
     ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]),
]


def _assert_same_as_seqeval(gold, pred):
    sl = pytest.importorskip("seqeval.metrics.sequence_labeling")
    m = M.ner_metrics(gold, pred)
    p, r, f, _ = sl.precision_recall_fscore_support(gold, pred, average="micro", zero_division=0)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((p, r, f), abs=1e-12)
    assert m["accuracy"] == pytest.approx(sl.accuracy_score(gold, pred), abs=1e-12)
    ps, rs, fs, support = sl.precision_recall_fscore_support(gold, pred, average=None, zero_division=0)
    types = sorted({e[0] for seq in gold + pred for e in sl.get_entities(seq)})  # seqeval's order: sorted types
    assert list(m["per_type"]) == types
    for t, pt, rt, ft, st in zip(types, ps, rs, fs, support):
        ours = m["per_type"][t]
        assert (ours["precision"], ours["recall"], ours["f1"]) == pytest.approx((pt, rt, ft), abs=1e-12), t
        assert ours["found_correct"] == st, t


def test_ner_against_seqeval_hand_cases():
    for gold, pred in _NER_CASES:  # one sentence at a time, then all together (chunks never cross sentences)
        _assert_same_as_seqeval([gold], [pred])
    _assert_same_as_seqeval([g for g, _ in _NER_CASES], [p for _, p in _NER_CASES])
    # a chunk ending one sentence and an I- starting the next are two chunks for both
    _assert_same_as_seqeval([["B-PER", "I-PER"], ["I-PER", "O"]], [["B-PER", "I-PER"], ["B-PER", "O"]])


def _perturb(tags, rng, tagset):
    """A deterministic stand-in for a model's output: IOB1-style starts, shortened spans, type and tag errors."""
    out = list(tags)
    for i, t in enumerate(out):
        u = rng.random()
        if t.startswith("B-") and u < 0.10:
            out[i] = "I-" + t[2:]  # the chunk now starts with I- (same chunk for conlleval)
        elif t.startswith("I-") and u < 0.08:
            out[i] = "O"  # the span is cut
        elif u < 0.04:
            out[i] = str(rng.choice(tagset))  # any other error
    return out


@pytest.mark.parametrize("scheme", ["iob2", "iob1"])
def test_ner_against_seqeval_random(scheme):
    rng = np.random.default_rng(11 if scheme == "iob2" else 12)
    tagset = ["O"] + [f"{p}-{t}" for p in ("B", "I") for t in ("PER", "LOC", "ORG", "MISC")]
    for _ in range(60):
        gold = []
        for _ in range(int(rng.integers(1, 6))):
            tags = [str(t) for t in rng.choice(tagset, size=int(rng.integers(1, 15)))]
            if scheme == "iob2":  # an I-X only after B-X or I-X
                for i, t in enumerate(tags):
                    if t.startswith("I-") and (i == 0 or tags[i - 1][2:] != t[2:]):
                        tags[i] = "B-" + t[2:]
            gold.append(tags)
        _assert_same_as_seqeval(gold, [_perturb(g, rng, tagset) for g in gold])


def test_ner_against_seqeval_real_conll(shared_data_dir):
    path = shared_data_dir / "conll2003" / "dev.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    from xtremedistil_tf.data.readers import read_conll

    data = read_conll(str(path))
    gold = [[data.label_names[i] for i in e.label] for e in data.examples]
    rng = np.random.default_rng(2003)
    pred = [_perturb(g, rng, data.label_names) for g in gold]
    assert sum(map(len, gold)) > 50_000
    _assert_same_as_seqeval(gold, pred)
    m = M.ner_metrics(gold, pred)
    assert 0.5 < m["f1"] < 0.99  # the perturbation leaves a realistic, imperfect score
    # and the same file as IOB1 (chunks start with I- unless they follow a chunk of the same type)
    iob1 = [[("I-" + t[2:]) if t.startswith("B-") and (i == 0 or g[i - 1][2:] != t[2:]) else t
             for i, t in enumerate(g)] for g in gold]
    assert M.ner_metrics(iob1, gold)["f1"] == 1.0
    _assert_same_as_seqeval(iob1, pred)


# ---------------------------------------------------------------------------------- NER as the original scored it
SPECIALS = ("[PAD]", "[CLS]", "[SEP]")


def test_remove_x_maps_sub_words_language_prefixes_and_special_tags():
    tags = ["B-PER", "X", "O", "X", "[PAD]", "en:B-LOC", "X", "[SEP]", "I-MISC", "X", "X"]
    assert M.remove_x(tags, SPECIALS) == ["B-PER", "I-PER", "O", "O", "O", "B-LOC", "I-LOC", "O", "I-MISC",
                                          "I-MISC", "I-MISC"]
    # At index 0 the "previous" tag is the last one, unconverted (Python's seq[-1]).
    assert M.remove_x(["X", "O", "I-ORG"], SPECIALS) == ["I-ORG", "O", "I-ORG"]
    assert M.remove_x(["X", "O", "X"], SPECIALS) == ["O", "O", "O"]
    assert tags[1] == "X"  # the caller's list is left as it was


def test_flat_ner_metrics_joins_sentences_into_one_sequence():
    # Per sentence, B-PER | I-PER are two gold chunks; as one flat sequence they are one.
    gold, pred = [["O", "B-PER"], ["I-PER", "O"]], [["O", "B-PER"], ["O", "O"]]
    per_sentence = M.ner_metrics(gold, pred)
    flat = M.flat_ner_metrics(sum(gold, []), sum(pred, []), SPECIALS)
    assert (per_sentence["found_correct"], per_sentence["correct_chunks"]) == (2, 1)
    assert (flat["found_correct"], flat["found_guessed"], flat["correct_chunks"]) == (1, 1, 0)
    assert flat["f1"] == 0.0
    with pytest.raises(ValueError, match="3 gold tags but 2 predicted"):
        M.flat_ner_metrics(["O"] * 3, ["O"] * 2, SPECIALS)


def _original_chunk_counts(gold, pred):
    """The original's Python conlleval, restated from docs/original_release.md §7: a chunk starts at a non-O tag
    that follows O, a tag of another type, or E-/S-, or that is B-/S-; it ends (before the current tag) under the
    mirrored rule. Returns (correct, gold chunks, predicted chunks)."""
    def parts(tag):
        return ("O", None) if tag == "O" else tuple(tag.split("-", 1))

    def boundary(prev, cur, opening):
        (p1, t1), (p2, t2) = parts(prev), parts(cur)
        if (p2 if opening else p1) == "O":
            return False
        return (p1 if opening else p2) == "O" or t1 != t2 or p2 in ("B", "S") or p1 in ("E", "S")

    correct = n_gold = n_pred = 0
    open_type, prev_g, prev_p = None, "O", "O"
    for g, p in zip(gold, pred):
        tg, tp = parts(g)[1], parts(p)[1]
        if open_type is not None:
            eg, ep = boundary(prev_g, g, False), boundary(prev_p, p, False)
            if eg and ep:
                correct, open_type = correct + 1, None
            elif eg != ep or tg != tp:
                open_type = None
        sg, sp = boundary(prev_g, g, True), boundary(prev_p, p, True)
        if sg and sp and tg == tp:
            open_type = tg
        n_gold, n_pred = n_gold + sg, n_pred + sp
        prev_g, prev_p = g, p
    return correct + (open_type is not None), n_gold, n_pred


@pytest.mark.parametrize("seed", range(3))
def test_flat_ner_metrics_counts_chunks_as_the_original_on_iob_tags(seed):
    rng = np.random.default_rng(seed)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-MISC"]
    for _ in range(200):
        n = int(rng.integers(1, 40))
        gold, pred = list(rng.choice(tags, n)), list(rng.choice(tags, n))
        if rng.random() < 0.5:  # predictions close to the gold, where most chunks are right
            pred = [g if rng.random() < 0.8 else p for g, p in zip(gold, pred)]
        m = M.flat_ner_metrics(gold, pred, SPECIALS)
        assert (m["correct_chunks"], m["found_correct"], m["found_guessed"]) == _original_chunk_counts(gold, pred)


def test_score_ner_like_original_skips_special_positions_and_keeps_x():
    names = ["O", "B-PER", "I-PER", "[PAD]", "X", "[SEP]", "[CLS]"]
    # [CLS] Jo ##hn lives [SEP] [PAD]: gold B-PER X O; predicted B-PER I-PER O, and [PAD] predicted O.
    labels = np.array([[6, 1, 4, 0, 5, 3]])
    pred = np.array([[6, 1, 2, 0, 5, 0]])
    logits = np.eye(len(names))[pred]
    m = M.score_ner_like_original(logits, labels, names, SPECIALS)
    # Kept: B-PER X O -> gold B-PER I-PER O; predicted B-PER I-PER O: one chunk, right.
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"]) == (1.0, 1.0, 1.0, 1.0)
    assert m["token_accuracy"] == pytest.approx(4 / 6)  # every position: the X's I-PER and the pad's O are wrong
    wrong = M.score_ner_like_original(np.eye(len(names))[np.array([[6, 0, 4, 1, 5, 3]])], labels, names,
                                      SPECIALS)
    assert (wrong["f1"], wrong["token_accuracy"]) == (0.0, pytest.approx(4 / 6))  # O X B-PER: no chunk right
    with pytest.raises(ValueError, match="every position"):
        M.score_ner_like_original(logits, np.array([[-100, 1, 4, 0, 5, 3]]), names, SPECIALS)
