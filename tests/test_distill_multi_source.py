"""Task transfer from several source tasks at once (--source_tasks) on tiny models: each source gets its own
teacher and head, every stage interleaves the sources' batches, the run resumes after a crash to the same weights,
and the shared encoder is exported."""
import json

import numpy as np
import pytest

from distill_helpers import (NEGATIVE, POSITIVE, assert_same_encoder, check_encoder_export, config, conll_folder,
                             crash_then_resume, make_task, make_teacher)

pytest.importorskip("torch")

from xtremedistil_tf.distill.config import parse_source_tasks, SourceTask  # noqa: E402
from xtremedistil_tf.distill.multi_source import MultiSourceDistillation  # noqa: E402
from xtremedistil_tf.distill.runner import run_distillation  # noqa: E402
from xtremedistil_tf.distill.teacher import has_saved_teacher  # noqa: E402
from xtremedistil_tf.errors import ConfigError  # noqa: E402
from xtremedistil_tf.train import loop  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm_dir):
    root = tmp_path_factory.mktemp("multi-source")
    teacher = make_teacher(root / "teacher", minilm_dir, hidden=32, layers=2, heads=4)
    films = make_task(root / "films", n_train=48, n_dev=16, n_test=16, n_transfer=40)
    reviews = make_task(root / "reviews", n_train=32, n_dev=16, n_test=16, seed=1)
    names = conll_folder(root / "names")
    rng = np.random.default_rng(0)
    words = " ".join(POSITIVE + NEGATIVE).split()
    corpus = root / "corpus.txt"
    corpus.write_text("".join(" ".join(rng.choice(words, size=rng.integers(2, 12))) + "\n" for _ in range(60)))
    return root, teacher, films, reviews, names, corpus


def _config(setup, model_dir, **overrides):
    root, teacher, films, reviews, names, corpus = setup
    values = dict(source_tasks=f"{reviews},{names}:ner", augmentation_file=str(corpus), hidden_size=16,
                  num_attention_heads=2, relation_loss="minilmv2", relation_heads=4, distil_chunk_size=50,
                  distil_epochs=1, ft_epochs=1, deterministic=True)
    values.update(overrides)
    return config(films, teacher, model_dir, **values)


def test_source_task_flags_are_parsed():
    assert parse_source_tasks("a/b, c:pairwise,d/e:NER,gs://bucket/f:cola,gs://bucket/g") == [
        SourceTask("a/b"), SourceTask("c", do_pairwise=True), SourceTask("d/e", do_NER=True),
        SourceTask("gs://bucket/f", glue_task="cola"), SourceTask("gs://bucket/g")]
    with pytest.raises(ConfigError, match="KIND is pairwise, ner or a GLUE task"):
        parse_source_tasks("a:nonsense")


def test_interleaved_order_takes_every_batch_of_every_source_once():
    order = loop.interleaved_order([3, 0, 5], seed=7)
    assert sorted(order.tolist()) == [0, 0, 0, 2, 2, 2, 2, 2]
    assert order.tolist() == loop.interleaved_order([3, 0, 5], seed=7).tolist()
    assert order.tolist() != sorted(order.tolist()), "mixed, not one source after the other"


@pytest.mark.parametrize("overrides, expected", [
    (dict(mode="faithful"), "needs --mode=default"),
    (dict(export_int8=True), "output is the encoder"),
    (dict(source_tasks="{films}"), "its own folder name"),
    (dict(source_tasks="{root}/missing"), "no such folder"),
    (dict(source_tasks="{root}/reviews:nonsense"), "invalid flags:\n  --source_tasks: .*KIND is pairwise, ner"),
])
def test_bad_source_flags_are_refused(setup, tmp_path, overrides, expected):
    root, films = setup[0], setup[2]
    overrides = {k: v.format(root=root, films=films) if isinstance(v, str) else v for k, v in overrides.items()}
    with pytest.raises(ConfigError, match=expected):
        MultiSourceDistillation(_config(setup, tmp_path / "bad", **overrides)).setup()


@pytest.mark.slow  # about 4 min (two runs of 9 stages on 3 sources); the trainer's interleaving is tested by default
def test_sources_train_interleaved_resume_after_a_crash_and_export_the_shared_encoder(setup, monkeypatch):
    root = setup[0]
    whole = root / "whole"
    run = MultiSourceDistillation(_config(setup, whole))
    metrics = run.run()
    films, reviews, names = run.runs
    assert [r.kind for r in run.runs] == ["classification", "classification", "ner"]
    # one encoder, three heads; three teachers, each fine-tuned in its own folder
    assert reviews.student.encoder is films.student.encoder is names.student.encoder
    assert len({id(r.student.classifier) for r in run.runs}) == 3
    for name in ("reviews", "names"):
        assert has_saved_teacher(str(whole / "sources" / name / "teacher"))
    # every stage trained on all sources (the representation stage: films' chunk + corpus chunks; the others sit
    # those out), and reports each source's scores and their mean
    history = metrics["histories"]["1"]
    assert {h["chunk"] for h in history} == {0, 1, 2}
    assert history[0]["examples"] > 36 + 29, "chunk 0 holds the films' and the other sources' rows"
    assert set(history[0]) >= {"films/val_loss", "reviews/val_loss", "names/val_loss"}
    label_stage = metrics["stages"][str(len(run.plan))]
    assert set(label_stage["dev"]) >= {"source_mean", "films/accuracy", "reviews/accuracy", "names/f1"}
    mean = np.mean([label_stage["dev"][k] for k in ("films/accuracy", "reviews/accuracy", "names/f1")])
    assert label_stage["dev"]["source_mean"] == pytest.approx(mean)
    assert metrics["selected_stage"]["metric"] == "source_mean"
    assert set(metrics["teacher"]["dev"]) >= {"source_mean", "names/f1"}
    assert json.loads((whole / "encoder" / "config.json").read_text())["architectures"] == ["BertModel"]
    check_encoder_export(str(whole / "encoder"))  # transformers loads every weight and reproduces ours
    assert (whole / "sources" / "names" / "xtremedistil.weights.h5").exists()
    names_final = json.loads((whole / "sources" / "names" / "metrics.json").read_text())["final"]
    assert names_final["dev"]["f1"] == metrics["final"]["dev"]["names/f1"]
    assert names_final["test"]["f1"] == metrics["final"]["test"]["names/f1"]

    broken = root / "broken"
    # crash on the 4th chunk read of stage 3: the loss sample and validation, chunk 0, then chunk 1
    resumed = crash_then_resume(monkeypatch, lambda: run_distillation(_config(setup, broken)), broken, crash_at=4,
                                stage_index=3)
    assert resumed["final"] == metrics["final"]
    assert_same_encoder(whole / "encoder", broken / "encoder")
