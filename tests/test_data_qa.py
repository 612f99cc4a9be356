"""QA windows and answers: every gold answer is recoverable from its windows, and the n-best search reads the best
span back out of the context across overlapping windows."""
import numpy as np
import pytest

from xtremedistil_tf.data.qa import (
    NO_ANSWER,
    check_window_flags,
    featurize_qa,
    postprocess_qa,
)
from xtremedistil_tf.data.readers.squad import QAExample
from xtremedistil_tf.errors import ConfigError

CONTEXT = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in "
           "France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, under "
           "their leader Rollo, agreed to swear fealty to King Charles III of West Francia. Through generations of "
           "assimilation and mixing with the native Frankish and Roman-Gaulish populations, their descendants "
           "would gradually merge with the Carolingian-based cultures of West Francia. The distinct cultural and "
           "ethnic identity of the Normans emerged initially in the first half of the 10th century.")


def _example(qid, question, answer=None, impossible=False):
    answers = () if answer is None else ((answer, CONTEXT.index(answer)),)
    return QAExample(qid=qid, question=question, context=CONTEXT, answers=answers, is_impossible=impossible)


EXAMPLES = [
    _example("q1", "In what country is Normandy located?", "France"),
    _example("q2", "Who was the Norse leader?", "Rollo"),
    _example("q3", "What is the original meaning of the word Norman?"
             " " + "really " * 40 + "long question", "Norse raiders"),
    _example("q4", "When did the Normans' identity emerge?", "the first half of the 10th century"),
    _example("q5", "Who gave their name to Italy?", impossible=True),
]


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    from xtremedistil_tf.data.tokenize import load_tokenizer
    return load_tokenizer(str(minilm_dir))


def _recovered(feats, f, examples):
    start, end = feats.arrays["labels"][f]
    ex = examples[feats.example_index[f]]
    return ex.context[feats.offsets[f, start, 0]:feats.offsets[f, end, 1]]


def test_every_answer_is_recovered_from_its_windows(tokenizer):
    feats = featurize_qa(tokenizer, EXAMPLES, max_seq_length=64, doc_stride=16, max_query_length=16)
    assert feats.stats["max_windows_per_example"] > 2  # the context does not fit one window
    assert feats.stats["questions_cut"] == 1 and feats.stats["answers_in_no_window"] == 0
    assert feats.arrays["input_ids"].shape == (len(feats), 64)
    for e, ex in enumerate(EXAMPLES):
        windows = np.flatnonzero(feats.example_index == e)
        labelled = [f for f in windows if feats.arrays["labels"][f, 0] != NO_ANSWER]
        if ex.is_impossible:
            assert not labelled
            continue
        assert labelled, ex.qid
        for f in labelled:
            assert _recovered(feats, f, EXAMPLES) == ex.answers[0][0]
        # Windows labelled "no answer" are exactly those whose context does not hold the whole answer.
        start = ex.answers[0][1]
        for f in set(windows) - set(labelled):
            ctx = feats.offsets[f][feats.offsets[f, :, 0] >= 0]
            assert ctx[0, 0] > start or ctx[-1, 1] < start + len(ex.answers[0][0])


def test_question_cut_to_max_query_length_and_offsets_only_on_context(tokenizer):
    feats = featurize_qa(tokenizer, EXAMPLES[2:3], max_seq_length=64, doc_stride=16, max_query_length=16)
    ids = feats.arrays["input_ids"][0]
    sep = tokenizer.sep_token_id
    first_sep = int(np.flatnonzero(ids == sep)[0])
    assert first_sep == 1 + 16  # [CLS] + 16 question tokens
    context = feats.offsets[0, :, 0] >= 0
    assert not context[:first_sep + 1].any() and context[first_sep + 1]
    assert np.all(feats.arrays["token_type_ids"][0][context] == 1)


def test_windows_overlap_by_the_stride(tokenizer):
    feats = featurize_qa(tokenizer, EXAMPLES[:1], max_seq_length=64, doc_stride=16, max_query_length=16)
    spans = [feats.offsets[f][feats.offsets[f, :, 0] >= 0] for f in range(len(feats))]
    for a, b in zip(spans, spans[1:]):
        assert np.array_equal(a[-16:], b[:16])  # the last 16 context tokens open the next window
    assert spans[0][0, 0] == 0 and spans[-1][-1, 1] == len(CONTEXT)


def _logits_for(feats, spans, null=None):
    """Logits that put 5 on the given (window -> (start, end)) tokens, 0 elsewhere, and `null` on [CLS]."""
    logits = np.zeros(feats.arrays["input_ids"].shape + (2,), np.float32)
    for f, (s, e, score) in spans.items():
        logits[f, s, 0] = logits[f, e, 1] = score
    if null is not None:
        logits[:, NO_ANSWER, :] = null
    return logits


def test_postprocess_reads_the_best_span_over_windows(tokenizer):
    feats = featurize_qa(tokenizer, EXAMPLES[:1], max_seq_length=64, doc_stride=16, max_query_length=16)
    gold = [f for f in range(len(feats)) if feats.arrays["labels"][f, 0] != NO_ANSWER][0]
    other = (gold + 1) % len(feats)
    s, e = feats.arrays["labels"][gold]
    ctx = np.flatnonzero(feats.offsets[other, :, 0] >= 0)
    logits = _logits_for(feats, {gold: (s, e, 5.0), other: (ctx[0], ctx[2], 4.0)})
    preds = postprocess_qa(EXAMPLES[:1], feats, logits)
    assert preds.text == {"q1": "France"}
    logits = _logits_for(feats, {gold: (s, e, 3.0), other: (ctx[0], ctx[2], 4.0)})
    wrong = postprocess_qa(EXAMPLES[:1], feats, logits).text["q1"]
    o = feats.offsets[other]
    assert wrong == CONTEXT[o[ctx[0], 0]:o[ctx[2], 1]]
    # An end before the start, or a span longer than max_answer_length, is never chosen.
    logits = _logits_for(feats, {gold: (e, s, 9.0)})
    logits[gold, s, 0] = 9.0
    logits[gold, e, 1] = 9.0
    assert postprocess_qa(EXAMPLES[:1], feats, logits, max_answer_length=1).text["q1"] == "France"


def test_version_2_null_answer_and_threshold(tokenizer):
    feats = featurize_qa(tokenizer, EXAMPLES[:1], max_seq_length=64, doc_stride=16, max_query_length=16)
    gold = [f for f in range(len(feats)) if feats.arrays["labels"][f, 0] != NO_ANSWER][0]
    s, e = feats.arrays["labels"][gold]
    logits = _logits_for(feats, {gold: (s, e, 2.0)}, null=3.0)  # null 6 > span 4
    preds = postprocess_qa(EXAMPLES[:1], feats, logits, version_2=True)
    assert preds.text == {"q1": ""} and preds.best_span == {"q1": "France"}
    assert preds.null_odds["q1"] == pytest.approx(2.0)
    assert postprocess_qa(EXAMPLES[:1], feats, logits, version_2=True, null_threshold=2.5).text == {"q1": "France"}


def test_window_flags_are_checked():
    check_window_flags(384, 128, 64)
    with pytest.raises(ConfigError, match="no room"):
        check_window_flags(40, 8, 40)
    with pytest.raises(ConfigError, match="--doc_stride=100"):
        check_window_flags(128, 100, 64)


def test_real_squad_answers_are_recovered(tokenizer, shared_data_dir):
    from xtremedistil_tf.data.readers.squad import read_squad_json
    path = shared_data_dir / "squad" / "train-v2.0-first10.json"
    if not path.exists():
        pytest.skip("train-v2.0-first10.json is absent")
    data = read_squad_json(str(path))
    feats = featurize_qa(tokenizer, data.examples, max_seq_length=256, doc_stride=64, max_query_length=64)
    answerable = sum(1 for ex in data.examples if ex.answers and not ex.is_impossible)
    assert feats.stats["answerable"] == answerable and feats.stats["answers_in_no_window"] == 0
    exact = 0
    for f in np.flatnonzero(feats.arrays["labels"][:, 0] != NO_ANSWER):
        got, gold = _recovered(feats, f, data.examples), data.examples[feats.example_index[f]].answers[0][0]
        assert gold in got  # the token span always covers the answer
        exact += got == gold
    labelled = int(np.sum(feats.arrays["labels"][:, 0] != NO_ANSWER))
    assert exact / labelled > 0.98  # the rest start or end inside a word piece ("1990s" for "1990")


def test_v2_scores_search_the_threshold_over_the_best_spans(tokenizer):
    from xtremedistil_tf.data.readers.squad import QAData
    from xtremedistil_tf.metrics.scoring import score_spans
    feats = featurize_qa(tokenizer, EXAMPLES[:1], max_seq_length=64, doc_stride=16, max_query_length=16)
    gold = [f for f in range(len(feats)) if feats.arrays["labels"][f, 0] != NO_ANSWER][0]
    s, e = feats.arrays["labels"][gold]
    logits = _logits_for(feats, {gold: (s, e, 2.0)}, null=3.0)  # null 6 beats the right span 4 by 2
    data = QAData(list(EXAMPLES[:1]), "x", "2.0")
    scores, preds = score_spans(data, feats, logits, version_2=True)
    assert preds.text == {"q1": ""} and scores["exact"] == 0.0 and scores["f1"] == 0.0
    assert scores["best_exact"] == 100.0 and scores["best_f1_thresh"] == pytest.approx(2.0)
    at_3, _ = score_spans(data, feats, logits, version_2=True, null_threshold=3.0)
    assert at_3["exact"] == 100.0
