"""Task-agnostic and task-transfer distillation on tiny models: they finish, resume after a crash to the same
weights, and export an encoder (the general checkpoint) that transformers loads and reproduces."""
import json

import numpy as np
import pytest

from distill_helpers import (NEGATIVE, POSITIVE, assert_same_encoder, check_encoder_export, config, crash_then_resume,
                             make_task, make_teacher)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from xtremedistil_tf.distill.config import DistilConfig  # noqa: E402
from xtremedistil_tf.distill.runner import Distillation, run_distillation  # noqa: E402
from xtremedistil_tf.errors import ConfigError  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm_dir):
    root = tmp_path_factory.mktemp("task-transfer")
    teacher = make_teacher(root / "teacher", minilm_dir, hidden=32, layers=4, heads=4)
    task = make_task(root / "task", n_train=48, n_dev=16, n_test=16, n_transfer=48)
    rng = np.random.default_rng(0)
    words = " ".join(POSITIVE + NEGATIVE).split()
    corpus = root / "corpus.txt"
    corpus.write_text("".join(" ".join(rng.choice(words, size=rng.integers(2, 12))) + "\n" for _ in range(120)))
    return root, teacher, task, corpus


def _agnostic(setup, model_dir, **overrides):
    root, teacher, task, corpus = setup
    values = dict(task_agnostic=True, transfer_file=str(corpus), hidden_size=32, num_attention_heads=4,
                  num_hidden_layers=2, relation_loss="minilmv2",
                  relation_heads=8, distil_chunk_size=50, distil_epochs=2, deterministic=True,
                  export_saved_model=False)
    values.update(overrides)
    c = config(task, teacher, model_dir, **values)
    c.task = ""
    return c


def test_task_agnostic_run_resumes_after_a_crash_and_exports_a_general_checkpoint(setup, monkeypatch):
    root = setup[0]
    whole = root / "agnostic-whole"
    metrics = run_distillation(_agnostic(setup, whole))
    assert list(metrics["stages"]) == ["1"] and metrics["final"] == {}
    stage = metrics["stages"]["1"]
    assert stage["train_loss_after"] < stage["train_loss_before"]
    assert not (whole / "xtremedistil.weights.h5").exists()  # no task head to write
    check_encoder_export(str(whole / "encoder"))

    broken = root / "agnostic-broken"
    # the loss sample, chunk 0, chunk 1, then the crash on chunk 2
    crash_then_resume(monkeypatch, lambda: run_distillation(_agnostic(setup, broken)), broken, crash_at=4)
    assert_same_encoder(whole / "encoder", broken / "encoder")


@pytest.mark.slow  # about 1 min; the task-agnostic test keeps corpus chunks, resume and export by default
def test_task_transfer_trains_on_task_then_corpus_and_exports_the_encoder(setup):
    root, teacher, task, corpus = setup
    run = Distillation(config(task, teacher, root / "transfer", hidden_size=24, num_attention_heads=3,
                              augmentation_file=str(corpus), relation_loss="minilmv2", relation_heads=4,
                              relation_teacher_layer=3, export_encoder=True, distil_chunk_size=50,
                              distil_epochs=1, ft_epochs=1, export_saved_model=False))
    metrics = run.run()
    # 48 transfer lines: one chunk; 120 corpus lines: three more, in the representation stage only
    assert run.num_stage_chunks(run.plan[0]) == 4 and run.num_stage_chunks(run.plan[1]) == 1
    assert "MiniLMv2(q,k,v; 4 relation heads, teacher layer 2)" in run.plan[0].describe()
    assert len(metrics["stages"]) == len(run.plan) > 1
    chunks = {h["chunk"] for h in metrics["histories"]["1"]}
    assert chunks == {0, 1, 2, 3}, "the representation stage trained on the transfer chunk and the corpus"
    assert (root / "transfer" / "xtremedistil.weights.h5").exists()  # the task model, as before
    cfg = json.loads((root / "transfer" / "encoder" / "config.json").read_text())
    assert cfg["architectures"] == ["BertModel"] and cfg["hidden_size"] == 24 and cfg["num_attention_heads"] == 3
    check_encoder_export(str(root / "transfer" / "encoder"))


def test_student_starts_from_the_chosen_teacher_layers(setup):
    root = setup[0]
    run = Distillation(_agnostic(setup, root / "init", student_init_from_teacher_layers="1,3",
                                 student_learning_rate=0.0))
    run.setup()
    run.load_data()
    run.prepare_teacher()
    run.prepare_student()
    assert run.config.student_lr == 5e-5  # trained weights: the pretrained rate
    student, teacher = run.student.encoder, run.teacher.encoder
    assert student.intermediate_size == teacher.intermediate_size == 64
    for j, i in enumerate((1, 3)):
        for a, b in zip(student.transformer_layers[j].weights, teacher.transformer_layers[i].weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(student.embeddings.word_embeddings.embeddings.numpy(),
                                  teacher.embeddings.word_embeddings.embeddings.numpy())


def test_general_checkpoint_initialises_a_task_run(setup):
    """The exported encoder is a --pt_student_checkpoint (and its shapes replace the student flags)."""
    root, teacher, task, _ = setup
    folder = root / "agnostic-whole" / "encoder"
    if not folder.exists():
        run_distillation(_agnostic(setup, root / "agnostic-whole"))
    run = Distillation(config(task, teacher, root / "from-general", pt_student_checkpoint=str(folder),
                              hidden_size=8, distil_epochs=1, ft_epochs=1))
    run.setup()
    assert (run.config.hidden_size, run.config.num_hidden_layers, run.config.num_attention_heads) == (32, 2, 4)


@pytest.mark.parametrize("overrides, expected", [
    (dict(task_agnostic=True), "--task_agnostic distils on --transfer_file alone: drop --task"),
    (dict(task_agnostic=True, transfer_file=""), "--task_agnostic needs --transfer_file"),
    (dict(relation_loss="tinybert"), "--relation_loss='tinybert'"),
    (dict(hidden_loss=False), "leaves the representation stage without a loss"),
    (dict(student_init_from_teacher_layers="0,1,2"), "3 layers for a student of --num_hidden_layers=2"),
    (dict(student_init_from_teacher_layers="0,x"), "comma-separated"),
])
def test_bad_flag_combinations_are_refused(setup, overrides, expected):
    root, teacher, task, _ = setup
    c = config(task, teacher, root / "bad", **overrides)
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        c.validate_flags()


@pytest.mark.parametrize("overrides, expected", [
    (dict(relation_loss="minilm", num_attention_heads=2), "minilm needs the same number of attention heads"),
    (dict(relation_loss="minilmv2", relation_heads=5), "--relation_heads=5 does not divide the student's width 32"),
    (dict(relation_loss="minilmv2", relation_teacher_layer=7), "the teacher has 4 layers"),
    (dict(student_init_from_teacher_layers="0,4"), "the teacher has layers 0..3"),
    (dict(student_init_from_teacher_layers="0,1", hidden_size=16), "needs the teacher's width and heads"),
])
def test_shape_checks_against_the_teacher(setup, overrides, expected):
    root, teacher, task, _ = setup
    values = dict(hidden_size=32, num_attention_heads=4)
    values.update(overrides)
    c: DistilConfig = config(task, teacher, root / "bad", **values)
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        c.validate_models(teacher_hidden=32, teacher_heads=4, teacher_max_len=64, teacher_layers=4,
                          student_hidden=c.hidden_size, student_heads=c.num_attention_heads,
                          student_layers=c.num_hidden_layers, student_max_len=512)
