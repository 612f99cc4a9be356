"""NER distillation end to end from a CoNLL folder (train/dev/test.txt, `word POS tag` a line) and from TFDS
`conll2003` (mocked), with the tiny teacher of tests/tiny_setup.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiny_setup
from distill_helpers import NER_ENTITIES, NER_WORDS, conll_folder

from xtremedistil_tf import io

def run(setup: dict, model_dir: Path, **flags) -> dict:
    from xtremedistil_tf.distill.config import DistilConfig
    from xtremedistil_tf.distill.runner import Distillation
    values = tiny_setup.distil_flags({**setup, "transfer": None}, model_dir, do_NER=True, ft_epochs=1,
                                     teacher_batch_size=16, **flags)
    return Distillation(DistilConfig(**values)).run()


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, minilm_dir):
    return tiny_setup.write_teacher(tmp_path_factory.mktemp("ner-teacher") / "teacher", minilm_dir)


def test_ner_from_a_conll_folder(tmp_path, teacher):
    task = conll_folder(tmp_path / "conll")
    metrics = run({"teacher": teacher, "task": task}, tmp_path / "run")
    for split in ("dev", "test"):
        assert {"f1", "precision", "recall"} <= set(metrics["final"][split])
    hf = io.read_json(str(tmp_path / "run" / "hf" / "config.json"))
    assert hf["architectures"] == ["BertForTokenClassification"]
    assert sorted(hf["id2label"].values()) == ["B-LOC", "B-ORG", "B-PER", "O"]


@pytest.mark.slow  # about 25 s; the CoNLL folder run and the TFDS label tests keep NER by default
def test_ner_from_tfds_conll2003(tmp_path, teacher):
    import tensorflow as tf
    import tensorflow_datasets as tfds
    rng = np.random.default_rng(0)
    words = np.array([w.encode() for w in NER_WORDS + sorted(NER_ENTITIES)], dtype=object)

    def rows(n):
        out = []
        for _ in range(n):
            k = int(rng.integers(3, 9))
            ids = rng.integers(0, len(words), k)
            out.append({"tokens": words[ids], "pos": np.ones(k, np.int64), "chunks": np.ones(k, np.int64),
                        "ner": np.where(ids >= len(NER_WORDS), 1, 0).astype(np.int64)})  # 1: B-PER in TFDS' tags
        return out

    def as_dataset(self, *args, split=None, **kwargs):
        data = rows(48 if str(split).startswith("train") else 12)
        spec = {"tokens": tf.TensorSpec([None], tf.string), "pos": tf.TensorSpec([None], tf.int64),
                "chunks": tf.TensorSpec([None], tf.int64), "ner": tf.TensorSpec([None], tf.int64)}
        return tf.data.Dataset.from_generator(lambda: iter(data), output_signature=spec)

    with tfds.testing.mock_data(num_examples=48, as_dataset_fn=as_dataset):
        metrics = run({"teacher": teacher, "task": "conll2003"}, tmp_path / "run", distil_epochs=1)
    assert "f1" in metrics["final"]["dev"]


def test_faithful_ner_trains_stops_and_selects_as_the_original(tmp_path, teacher):
    """Faithful mode: every position up to seq_len is predicted (no zero-padded trimmed logits), training stops on
    token accuracy over every position (Keras' val_acc) and stages are picked by the original's flat F1."""
    from xtremedistil_tf.distill.config import DistilConfig
    from xtremedistil_tf.distill.runner import Distillation
    from xtremedistil_tf.metrics import main_metric, score_ner_like_original
    task = conll_folder(tmp_path / "conll")
    values = tiny_setup.distil_flags({"teacher": teacher, "task": task, "transfer": None}, tmp_path / "run",
                                     do_NER=True, ft_epochs=2, teacher_batch_size=16, mode="faithful")
    run = Distillation(DistilConfig(**values))
    metrics = run.run()
    assert run.data.special_tokens == ("[PAD]", "[SEP]", "[CLS]")
    assert not run.trim
    # The final student's scores are those of its own full-length logits.
    test = run.arrays["test"]
    logits = run.student({k: test[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                         training=False)["logits"].numpy()
    expected = score_ner_like_original(logits, test["labels"], run.label_names, run.data.special_tokens)
    for k, v in expected.items():
        assert metrics["final"]["test"][k] == pytest.approx(v, abs=1e-6), k
    # Label stages stopped on dev token accuracy; stages were selected on test's flat F1, later stages winning ties.
    stages = metrics["stages"]
    label_stages = [k for k, s in stages.items() if s["loss"] == "labels"]
    assert label_stages
    for k in label_stages:
        epochs = metrics["histories"][k]
        assert epochs and all(e["score"] == e["token_accuracy"] for e in epochs)
        assert stages[k]["phase_best"] == max(e["token_accuracy"] for e in epochs)
    selected = metrics["selected_stage"]
    assert (selected["split"], selected["metric"]) == ("test", main_metric("ner"))
    scored = {int(k): s["test"]["f1"] for k, s in stages.items() if s.get("test")}
    assert selected["score"] == max(scored.values())
    assert selected["stage"] == max(k for k, v in scored.items() if v == selected["score"])
