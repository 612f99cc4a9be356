"""Tests for xtremedistil_tf.metrics.squad: hand-worked cases of the official SQuAD v1.1 / v2.0 evaluation, its
quirks pinned, and (when ../shared/data is present) the real v1.1 dev set."""
from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import pytest

from xtremedistil_tf import metrics as M
from xtremedistil_tf.metrics import squad as S


def test_exported_and_light():
    assert M.squad_v1_metrics is S.squad_v1_metrics and M.squad_v2_metrics is S.squad_v2_metrics
    # standard library + absl only: no TensorFlow, no numpy
    tree = ast.parse(Path(S.__file__).read_text())
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert roots <= {"__future__", "collections", "re", "string", "typing", "absl"}, roots


# ---------------------------------------------------------------------------------------------------------
# normalize / exact / f1
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("The Cat,  sat!", "cat sat"),        # lower -> "the cat,  sat!", no punct -> "the cat  sat", no article
    ("An apple a day", "apple day"),      # both articles go
    ("theater anthem", "theater anthem"),  # articles only as whole words
    ("\tfoo \n bar ", "foo bar"),         # whitespace collapsed and stripped
    ("the.cat", "thecat"),                # punctuation goes first, so "the" is no longer a word
    ("Don't", "dont"),
    ("A-B", "ab"),                        # "-" removed, not turned into a space
    ("“Paris”", "“paris”"),               # only ASCII punctuation is removed
    ("", ""),
])
def test_normalize_answer(text, expected):
    assert S.normalize_answer(text) == expected


def test_exact_match():
    assert S.exact_match("The Eiffel Tower!", "eiffel tower") == 1
    assert S.exact_match("Eiffel", "Eiffel Tower") == 0
    assert S.exact_match("“Paris”", "Paris") == 0  # curly quotes survive normalization
    assert S.exact_match("", "") == 1
    assert S.exact_match("the", "") == 1  # "the" normalizes to ""


def test_f1_partial_overlap():
    # pred "the cat sat" -> [cat, sat]; gold "a cat sat on the mat" -> [cat, sat, on, mat]; common 2
    # precision 2/2 = 1, recall 2/4 = 1/2, F1 = 2 * 1 * 1/2 / (1 + 1/2) = 2/3
    assert S.f1("the cat sat", "a cat sat on the mat") == pytest.approx(2 / 3)
    # symmetric in its two arguments: P and R swap
    assert S.f1("a cat sat on the mat", "the cat sat") == pytest.approx(2 / 3)


def test_f1_counts_repeated_tokens_once_each():
    # pred [cat, cat, cat], gold [cat, dog]: common = min(3, 1) = 1 -> P = 1/3, R = 1/2
    # F1 = 2 * 1/6 / (1/3 + 1/2) = (1/3) / (5/6) = 2/5
    assert S.f1("cat cat cat", "cat dog") == pytest.approx(0.4)


def test_f1_empty_and_disjoint():
    assert S.f1("", "") == 1.0
    assert S.f1("the", "a") == 1.0  # both normalize to ""
    assert S.f1("x", "") == 0.0
    assert S.f1("", "x") == 0.0
    assert S.f1("dog", "cat") == 0.0
    assert S.f1("Denver Broncos", "denver broncos.") == 1.0


# ---------------------------------------------------------------------------------------------------------
# v1.1
# ---------------------------------------------------------------------------------------------------------


def test_max_over_gold_answers():
    # pred "Denver" vs gold 1 "Broncos of Denver city" [broncos, of, denver, city]: P=1, R=1/4, F1 = 0.5/1.25 = 0.4
    #               vs gold 2 "Denver Broncos" [denver, broncos]: P=1, R=1/2, F1 = 1/1.5 = 2/3
    # max = 2/3 (the first gold would give 0.4, the mean 8/15); exact 0 with both
    gold = {"q": ["Broncos of Denver city", "Denver Broncos"]}
    v1 = S.squad_v1_metrics(gold, {"q": "Denver"})
    assert v1 == {"exact_match": 0.0, "f1": pytest.approx(200 / 3), "total": 1}
    v2 = S.squad_v2_metrics(gold, {"q": "Denver"})
    assert v2["exact"] == 0.0 and v2["f1"] == pytest.approx(200 / 3)
    # exact is a max too: the second gold matches
    assert S.squad_v1_metrics(gold, {"q": "the denver broncos"})["exact_match"] == 100.0


def test_v1_totals_with_unanswered_question(caplog):
    gold = {
        "q1": ["Denver Broncos"],        # pred "denver broncos": exact 1, f1 1
        "q2": ["a cat sat on the mat"],  # pred "the cat sat": exact 0, f1 2/3 (worked out above)
        "q3": ["Santa Clara"],           # no prediction: 0, 0
    }
    predictions = {"q1": "denver broncos", "q2": "the cat sat", "not-in-gold": "Santa Clara"}
    with caplog.at_level(logging.WARNING):
        out = S.squad_v1_metrics(gold, predictions)
    # exact = 100 * 1/3; f1 = 100 * (1 + 2/3) / 3 = 500/9
    assert out == {"exact_match": pytest.approx(100 / 3), "f1": pytest.approx(500 / 9), "total": 3}
    assert "1 of 3 questions have no prediction" in caplog.text and "'q3'" in caplog.text


def test_v1_no_warning_when_all_answered(caplog):
    with caplog.at_level(logging.WARNING):
        out = S.squad_v1_metrics({"q": ["x y"]}, {"q": "x"})  # P=1, R=1/2 -> 2/3
    assert out["f1"] == pytest.approx(200 / 3)
    assert "no prediction" not in caplog.text


def test_v1_and_v2_differ_on_gold_that_normalizes_to_empty():
    # gold "." normalizes to "", pred "" too: exact 1 in both scripts.
    # v1.1's f1_score has no empty case: 0 common tokens -> 0. v2.0 drops the gold, scores against [""] -> 1,
    # yet counts the question as answerable, since its raw answer list is not empty.
    gold, predictions = {"q": ["."]}, {"q": ""}
    assert S.squad_v1_metrics(gold, predictions) == {"exact_match": 100.0, "f1": 0.0, "total": 1}
    v2 = S.squad_v2_metrics(gold, predictions)
    assert (v2["exact"], v2["f1"], v2["HasAns_total"]) == (100.0, 100.0, 1) and "NoAns_total" not in v2
    # next to a real answer the dropped "." no longer matches "" in v2.0 (exact 0, f1 0); v1.1 keeps it: exact 100
    gold = {"q": ["interventionism", "."]}
    assert S.squad_v1_metrics(gold, predictions) == {"exact_match": 100.0, "f1": 0.0, "total": 1}
    v2 = S.squad_v2_metrics(gold, predictions)
    assert (v2["exact"], v2["f1"]) == (0.0, 0.0)


# ---------------------------------------------------------------------------------------------------------
# v2.0
# ---------------------------------------------------------------------------------------------------------

# raw scores:                                    exact  f1
GOLD_V2 = {
    "q1": ["Denver Broncos"],         # "Denver Broncos"   1     1
    "q2": ["a cat sat on the mat"],   # "the cat sat"      0     2/3
    "q3": [],                         # ""                 1     1
    "q4": [],                         # "Santa Clara"      0     0
}
PRED_V2 = {"q1": "Denver Broncos", "q2": "the cat sat", "q3": "", "q4": "Santa Clara", "extra": "ignored"}
NA_PROBS = {"q1": 0.2, "q2": 0.9, "q3": 0.8, "q4": 0.95}


def test_v2_answerable_and_unanswerable():
    out = S.squad_v2_metrics(GOLD_V2, PRED_V2)
    assert list(out)[:9] == [
        "exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1", "NoAns_total",
    ]
    # exact = 100 * (1+0+1+0)/4 = 50; f1 = 100 * (1 + 2/3 + 1 + 0)/4 = 100 * (8/3)/4 = 200/3
    assert out["exact"] == 50.0 and out["f1"] == pytest.approx(200 / 3) and out["total"] == 4
    # HasAns (q1, q2): exact 100 * 1/2 = 50, f1 100 * (5/3)/2 = 250/3
    assert out["HasAns_exact"] == 50.0 and out["HasAns_f1"] == pytest.approx(250 / 3) and out["HasAns_total"] == 2
    # NoAns (q3, q4): 50 / 50
    assert (out["NoAns_exact"], out["NoAns_f1"], out["NoAns_total"]) == (50.0, 50.0, 2)


def test_v2_group_keys_only_when_present():
    only_has = S.squad_v2_metrics({"a": ["x"]}, {"a": "x"})
    assert "HasAns_total" in only_has and not any(k.startswith("NoAns") for k in only_has)
    only_no = S.squad_v2_metrics({"a": []}, {"a": "x"})
    assert "NoAns_total" in only_no and not any(k.startswith("HasAns") for k in only_no)
    assert only_no["exact"] == 0.0


def test_v2_na_prob_threshold():
    out = S.squad_v2_metrics(GOLD_V2, PRED_V2, NA_PROBS, na_prob_thresh=0.5)
    # na_prob > 0.5: q2, q3, q4 are predicted unanswerable -> q2 (answerable) 0, q3 and q4 (unanswerable) 1;
    # q1 keeps its raw 1/1. exact = f1 = 100 * 3/4 = 75
    assert out["exact"] == 75.0 and out["f1"] == 75.0
    assert (out["HasAns_exact"], out["HasAns_f1"]) == (50.0, 50.0)
    assert (out["NoAns_exact"], out["NoAns_f1"]) == (100.0, 100.0)
    # the default threshold 1.0 is never exceeded by a probability: the raw scores (50, 200/3)
    raw = S.squad_v2_metrics(GOLD_V2, PRED_V2, NA_PROBS)
    assert raw["exact"] == 50.0 and raw["f1"] == pytest.approx(200 / 3)
    # strictly greater: a na_prob equal to the threshold is not cut (q2 keeps 2/3 at thresh 0.9; q4 is cut)
    at = S.squad_v2_metrics(GOLD_V2, PRED_V2, NA_PROBS, na_prob_thresh=0.9)
    assert at["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 1) / 4)


def test_v2_best_threshold_hand():
    out = S.squad_v2_metrics(GOLD_V2, PRED_V2, NA_PROBS)
    # sorted by na_prob: q1 .2, q3 .8, q2 .9, q4 .95; start: 2 NoAns questions -> score 2, thresh 0.0
    # exact: q1 +1 -> 3 (best, thresh .2); q3 unanswerable with pred "" -> +0; q2 +0; q4 pred non-empty -> -1 = 2
    #   best_exact = 100 * 3/4 = 75 at 0.2
    # f1:    q1 +1 -> 3 (best, .2); q3 +0 -> 3; q2 +2/3 -> 11/3 (best, .9); q4 -1 -> 8/3
    #   best_f1 = 100 * (11/3)/4 = 275/3 at 0.9
    assert out["best_exact"] == 75.0 and out["best_exact_thresh"] == 0.2
    assert out["best_f1"] == pytest.approx(275 / 3) and out["best_f1_thresh"] == 0.9
    # cross-check by another path: thresholding at best_f1_thresh scores best_f1 (q4 alone cut -> 1+2/3+1+1)
    cut = S.squad_v2_metrics(GOLD_V2, PRED_V2, NA_PROBS, na_prob_thresh=out["best_f1_thresh"])
    assert cut["f1"] == pytest.approx(out["best_f1"])


def test_v2_best_threshold_none_beats_start():
    # every answerable question wrong: predicting "no answer" for all is best -> score = NoAns share, thresh 0.0
    gold = {"a": ["x"], "b": []}
    out = S.squad_v2_metrics(gold, {"a": "y", "b": "z"}, {"a": 0.3, "b": 0.6})
    # start 1 (b); a +0 -> 1; b -1 -> 0: best 1 of 2 = 50 at 0.0 (exact itself: 0)
    assert (out["best_exact"], out["best_exact_thresh"], out["exact"]) == (50.0, 0.0, 0.0)


def test_v2_best_equals_plain_without_na_probs_when_all_answerable():
    # no na_probs (all 0.0), every question answerable, every prediction non-empty
    gold = {"q1": ["Denver Broncos"], "q2": ["a cat sat on the mat"], "q3": ["Santa Clara"]}
    preds = {"q1": "Denver Broncos", "q2": "the cat sat", "q3": "Paris"}
    out = S.squad_v2_metrics(gold, preds)
    # exact 100 * 1/3; f1 100 * (1 + 2/3 + 0)/3 = 500/9
    assert out["exact"] == pytest.approx(100 / 3) and out["f1"] == pytest.approx(500 / 9)
    assert out["best_exact"] == out["exact"] and out["best_f1"] == out["f1"]
    assert out["best_exact_thresh"] == 0.0 and out["best_f1_thresh"] == 0.0


def test_v2_best_without_na_probs_depends_on_prediction_order():
    # The script's quirk with unanswerable questions and equal na_probs: the walk may stop inside the tie.
    # q1..q4 in order, all na_prob 0.0: exact start 2; q1 +1 -> 3 (best); q2 +0; q3 +0; q4 -1 -> 2. best 3/4
    # f1: 2; q1 -> 3; q2 -> 11/3 (best); q3 +0; q4 -> 8/3. best 100 * (11/3)/4 = 275/3, above f1 = 200/3
    out = S.squad_v2_metrics(GOLD_V2, PRED_V2)
    assert out["exact"] == 50.0 and out["best_exact"] == 75.0 and out["best_exact_thresh"] == 0.0
    assert out["best_f1"] == pytest.approx(275 / 3)
    # q4 first: 2; q4 -1 -> 1; q1 -> 2 (not above 2); q2 +0; q3 +0: best stays the start, 2/4 = 50
    reordered = {"q4": PRED_V2["q4"], **PRED_V2}
    assert list(reordered)[0] == "q4"
    assert S.squad_v2_metrics(GOLD_V2, reordered)["best_exact"] == 50.0


def test_v2_best_uses_raw_prediction_text():
    # unanswerable b predicted "." scores exact 1 (normalizes to ""), but the walk sees a non-empty string:
    # start 1 (b); b (.1) -1 -> 0; a (.5) +1 -> 1, not above the start: best 1/2 = 50, below exact = 100
    gold = {"a": ["x"], "b": []}
    out = S.squad_v2_metrics(gold, {"a": "x", "b": "."}, {"a": 0.5, "b": 0.1})
    assert out["exact"] == 100.0 and out["best_exact"] == 50.0


# ---------------------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------------------


def test_bad_inputs():
    with pytest.raises(ValueError, match="no gold questions"):
        S.squad_v1_metrics({}, {})
    with pytest.raises(ValueError, match="no gold questions"):
        S.squad_v2_metrics({}, {})
    with pytest.raises(TypeError, match="list of answer texts"):
        S.squad_v1_metrics({"q": "Paris"}, {"q": "Paris"})
    with pytest.raises(ValueError, match="squad_v2_metrics"):
        S.squad_v1_metrics({"q": []}, {"q": ""})
    with pytest.raises(ValueError, match="1 of 2 questions have no prediction.*'b'"):
        S.squad_v2_metrics({"a": ["x"], "b": []}, {"a": "x"})
    with pytest.raises(ValueError, match="1 of 2 questions have no na_prob.*'b'"):
        S.squad_v2_metrics({"a": ["x"], "b": []}, {"a": "x", "b": ""}, {"a": 0.1})
    with pytest.raises(TypeError, match="must be a string"):
        S.squad_v2_metrics({"a": ["x"]}, {"a": None})


# ---------------------------------------------------------------------------------------------------------
# The real v1.1 dev set (skipped when ../shared/data is absent)
# ---------------------------------------------------------------------------------------------------------


def test_real_squad_v1_dev(shared_data_dir):
    path = shared_data_dir / "squad" / "dev-v1.1.json"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    gold = {qa["id"]: [a["text"] for a in qa["answers"]] for art in data for p in art["paragraphs"] for qa in p["qas"]}
    assert len(gold) == 10570
    first = {qid: answers[0] for qid, answers in gold.items()}
    assert S.squad_v1_metrics(gold, first) == {"exact_match": 100.0, "f1": 100.0, "total": 10570}
    # "" scores 0 except exact match on the 3 questions that have "." among their gold answers ("." normalizes to ""
    # as "" does); v1.1's F1 of two empty texts is 0. exact = 100 * 3/10570
    dots = sorted(qid for qid, answers in gold.items() if "." in answers)
    assert dots == ["5725bad5271a42140099d0c1", "5730b7ce069b5314008322c4", "57340d124776f419006617bf"]
    empty = S.squad_v1_metrics(gold, dict.fromkeys(gold, ""))
    assert empty == {"exact_match": pytest.approx(300 / 10570), "f1": 0.0, "total": 10570}
    v2 = S.squad_v2_metrics(gold, first)
    assert (v2["exact"], v2["f1"], v2["HasAns_total"]) == (100.0, 100.0, 10570) and "NoAns_total" not in v2
