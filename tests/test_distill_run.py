"""End-to-end distillation on a tiny teacher and task: stages, outputs, resume, export, XLA."""
import json
import os

import numpy as np
import pytest

from distill_helpers import config, make_task
from tiny_setup import marked_for_xla

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from xtremedistil_tf.distill.runner import Distillation, run_distillation  # noqa: E402
from xtremedistil_tf.errors import ConfigError  # noqa: E402
from xtremedistil_tf.train import loop  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm_dir):
    root = tmp_path_factory.mktemp("distill")
    teacher = minilm_dir  # a real teacher: a random one gives near-constant targets and nothing to learn
    task = make_task(root / "task", n_train=160, n_dev=40, n_test=40, n_transfer=320)
    return root, teacher, task


def _weights(model_dir):
    import h5py
    out = {}
    with h5py.File(os.path.join(model_dir, "xtremedistil.weights.h5"), "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, np.array(obj)) if hasattr(obj, "shape") else None)
    return out


def _hf_logits(folder, arrays):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(**{k: torch.tensor(arrays[k], dtype=torch.long) for k in
                        ("input_ids", "attention_mask", "token_type_ids")}).logits.numpy()


def _end_to_end_config(setup, mode, **overrides):
    root, teacher, task = setup
    # a teacher rate that fine-tunes the MiniLM (1e-3 collapses it to constant logits: nothing to distil)
    values = dict(mode=mode, export_hf=True, export_saved_model=True, teacher_model_dir=str(root / "teacher-ft"),
                  compress_word_embedding=True, hidden_size=32, teacher_learning_rate=1e-4)
    values.update(overrides)
    return config(task, teacher, root / f"run-{mode}", **values)


@pytest.fixture(scope="module")
def finished_run(setup):
    """A finished run of each mode, made once per module by whichever test asks first."""
    finished = {}

    def get(mode):
        if mode not in finished:
            run = Distillation(_end_to_end_config(setup, mode))
            finished[mode] = (run, run.run())
        return finished[mode]
    return get


# faithful: about 40 s; its stages, stopping and selection are also checked by the faster faithful tests here
@pytest.mark.parametrize("mode", ["default", pytest.param("faithful", marks=pytest.mark.slow)])
def test_run_end_to_end(setup, finished_run, mode, monkeypatch):
    root, teacher, task = setup
    model_dir = root / f"run-{mode}"
    cfg = _end_to_end_config(setup, mode)
    run, metrics = finished_run(mode)
    assert metrics["teacher"]["dev"]["accuracy"] >= 0.9
    stages = metrics["stages"]
    expected = 7 if mode == "faithful" else 1 + 2 * 4
    assert sorted(int(k) for k in stages) == list(range(1, expected + 1))
    for k, info in stages.items():
        # each stage's own loss on (a sample of) its training data, without dropout, before and after it
        before, after = info["train_loss_before"], info["train_loss_after"]
        prev = stages.get(str(int(k) - 1), {})
        if mode == "faithful" and info["loss"] == "logits" and prev.get("loss") == "logits" \
                and info["phase_best"] == prev["phase_best"]:
            # the original's rule: a logit stage that does not beat the previous one's validation loss gets the
            # previous stage's weights back
            assert after == pytest.approx(before, rel=1e-6), (k, before, after)
            continue
        # (or already fitted: below 1e-4, dropout noise in training moves a loss that small either way)
        assert after < before or after < 1e-4, (k, before, after)
    # the stages' loss evaluations: one compiled predict step, traced once, per kind of loss (not one per stage)
    compiled = [f for fn in run._eval_fns.values() for f in loop._PREDICT_CACHE[fn].values()]
    assert sorted({info["loss"] for info in stages.values()}) == ["labels", "logits", "representation"]
    assert [f.experimental_get_tracing_count() for f in compiled] == [1, 1, 1]
    for name in ("xtremedistil-config.json", "xtremedistil.weights.h5", "word_embedding.npy", "metrics.json",
                 "student-config.json", "hf/config.json", "hf/model.safetensors", "saved_model/saved_model.pb",
                 "plots/stage_losses.png", "plots/stage_scores.png"):
        assert (model_dir / name).exists(), name
    saved = json.loads((model_dir / "xtremedistil-config.json").read_text())
    for key in ("task", "seq_len", "hidden_size", "student_distil_batch_size", "distil_chunk_size",
                "teacher_hidden_size", "label_list", "mode"):
        assert key in saved
    emb = np.load(model_dir / "word_embedding.npy")
    assert emb.shape == (30522, 32)
    # the HF export reproduces the Keras logits in PyTorch
    dev = run.arrays["dev"]
    keras_logits = run.student(dev, training=False)["logits"].numpy()
    np.testing.assert_allclose(_hf_logits(model_dir / "hf", dev), keras_logits, atol=1e-4)
    # selection: dev in the default mode, test (as the original) in the faithful mode
    assert metrics["selected_stage"]["split"] == ("test" if mode == "faithful" else "dev")
    # a finished run rerun only reports: nothing is trained, evaluated or written again
    written = {p: p.stat().st_mtime_ns for p in model_dir.rglob("*") if p.is_file()}

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run did work again")

    for name in ("load_data", "prepare_teacher", "prepare_student", "run_stage", "evaluate", "finish"):
        monkeypatch.setattr(Distillation, name, refuse)
    again = Distillation(cfg).run()
    assert again["final"] == metrics["final"]
    assert {p: p.stat().st_mtime_ns for p in model_dir.rglob("*") if p.is_file()} == written


def test_faithful_rows_are_shuffled_as_the_original_and_keyed(tmp_path, minilm_dir, monkeypatch):
    """The original shuffled every file it read (sklearn, random_state=PYTHONHASHSEED): the faithful mode's splits
    and transfer chunks hold the same rows in the same order; the default mode keeps the file's order."""
    import xtremedistil_tf.distill.runner as runner
    from xtremedistil_tf.data.pipeline import shuffled_row_order

    monkeypatch.setattr(runner, "weights_id", lambda path: "teacher")  # no fine-tuned teacher needed here
    task = make_task(tmp_path / "task", n_train=40, n_dev=12, n_test=12, n_transfer=100)
    runs = {}
    for mode in ("default", "faithful"):
        run = Distillation(config(task, minilm_dir, tmp_path / mode, mode=mode, seed=7, distil_chunk_size=40))
        run.setup()
        run.load_data()
        runs[mode] = run
    for mode, run in runs.items():
        for split in ("train", "dev", "test"):
            direct = run.data.featurizer.encode(run.task.splits[split], name=split)
            n = len(direct["labels"])
            order = shuffled_row_order(n, 7) if mode == "faithful" else np.arange(n)
            for k in ("input_ids", "labels"):
                np.testing.assert_array_equal(run.arrays[split][k], direct[k][order], err_msg=(mode, split, k))
        whole = run.data.transfer.load_chunk(0, 100)["input_ids"]
        order = shuffled_row_order(100, 7) if mode == "faithful" else np.arange(100)
        assert run.num_chunks == 3
        chunks = [run.data.transfer_chunk(i)["input_ids"] for i in range(3)]
        assert [len(ch) for ch in chunks] == [40, 40, 20]
        np.testing.assert_array_equal(np.concatenate(chunks), whole[order], err_msg=mode)
    assert not np.array_equal(runs["faithful"].arrays["train"]["labels"], runs["default"].arrays["train"]["labels"])

    # Cached teacher outputs are keyed by row order and by the transfer file's content, not only its path.
    key = runs["default"]._teacher_outputs_key()
    assert runs["faithful"]._teacher_outputs_key()["rows"] != key["rows"]
    with open(task / "transfer.tsv", "a") as f:
        f.write("one more unlabelled sentence\n")
    changed = Distillation(config(task, minilm_dir, tmp_path / "default", mode="default", seed=7,
                                  distil_chunk_size=40))
    changed.setup()
    changed.load_data()
    assert changed.data.transfer.num_examples == 101
    assert changed._teacher_outputs_key()["transfer"] != key["transfer"]


def test_rerun_with_other_flags_is_refused(setup, finished_run):
    root, teacher, task = setup
    model_dir = root / "run-default"
    finished_run("default")
    with pytest.raises(ConfigError, match="hidden_size"):
        Distillation(config(task, teacher, model_dir, hidden_size=64, export_hf=True, export_saved_model=True,
                            teacher_model_dir=str(root / "teacher-ft"), compress_word_embedding=True)).run()


@pytest.mark.slow  # about 2 min; test_fault_injection's SIGKILL smoke keeps resume in the default run
def test_killed_between_stages_resumes_to_the_same_weights(setup, monkeypatch):
    root, teacher, task = setup
    common = dict(deterministic=True, teacher_model_dir=str(root / "teacher-ft"), distil_epochs=1, ft_epochs=1)
    whole = root / "whole"
    run_distillation(config(task, teacher, whole, **common))

    broken = root / "broken"
    original = Distillation.run_stage
    calls = {"n": 0}

    def crash_after_three(self, stage, carried):
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        calls["n"] += 1
        return original(self, stage, carried)

    monkeypatch.setattr(Distillation, "run_stage", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_distillation(config(task, teacher, broken, **common))
    monkeypatch.setattr(Distillation, "run_stage", original)
    state = json.loads((broken / "run_state.json").read_text())
    assert sorted(state["stages"]) == ["1", "2", "3"]
    run_distillation(config(task, teacher, broken, **common))
    a, b = _weights(whole), _weights(broken)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _xla_student():
    """A tiny student, a Distiller step compiled with XLA (jit_compile) and 20 fixed-shape batches."""
    import tensorflow as tf

    from xtremedistil_tf.distill.distiller import Distiller
    from xtremedistil_tf.distill.losses import LogitsMSE
    from xtremedistil_tf.distill.student import Student
    from xtremedistil_tf.models.encoder import Encoder
    from xtremedistil_tf.train import loop

    enc = Encoder(vocab_size=100, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32)
    student = Student(enc, 2, "classification", teacher_hidden_size=32)
    student.build()
    strategy = tf.distribute.get_strategy()
    rng = np.random.default_rng(0)
    batch = {"input_ids": rng.integers(1, 100, (8, 12)).astype("int32"), "attention_mask": np.ones((8, 12), "int32"),
             "token_type_ids": np.zeros((8, 12), "int32"), "t_logits": rng.normal(size=(8, 2)).astype("float32")}
    opt = loop.make_optimizer(1e-2)
    loop.build_optimizer(opt, student.trainable_variables, strategy)

    def distiller():
        d = Distiller(student, None, [LogitsMSE()])
        d.configure(optimizer=opt, variables=student.trainable_variables, global_batch_size=8, jit_compile=True)
        return d

    ds = loop.distribute(strategy, tf.data.Dataset.from_tensors(batch).repeat(20))
    return strategy, student, opt, distiller, ds


def test_train_step_compiles_with_xla():
    """The TPU path: fixed shapes and forward + loss + gradients compiled with XLA (jit_compile), on CPU."""
    from xtremedistil_tf.train import loop
    strategy, _, _, distiller, ds = _xla_student()
    distiller = distiller()
    step = loop.Step(strategy, distiller)
    values = [float(step(b)) for b in ds]
    assert values[-1] < values[0]
    assert marked_for_xla(step._step.get_concrete_function(next(iter(ds)))), \
        "the inner gradient function is not marked for XLA compilation"
    # The TPU step loop: 8 compiled steps a graph call (20 batches: calls of 8, 8 and 4), going on from there.
    many = loop.Step(strategy, distiller, steps_per_execution=8)
    more = []
    loop.run_epoch(many, ds, description="xla", log_every=0, on_batch=lambda i, loss: more.append(loss))
    assert len(more) == 20 and more[-1] < more[0] < values[0]
    assert marked_for_xla(many._many.get_concrete_function(iter(ds)))


@pytest.mark.slow  # about 14 s; the loop's steps are compared with one a call by default (test_train_trainer)
def test_interleaved_sources_compile_with_xla():
    """Two sources (--source_tasks) in calls of 8 on the TPU path: each source's XLA-compiled step picked inside
    the graph."""
    import tensorflow as tf

    from xtremedistil_tf.train import loop
    strategy, student, opt, distiller, ds = _xla_student()
    both = loop.InterleavedSteps([loop.Step(strategy, distiller()), loop.Step(strategy, distiller())],
                                 steps_per_execution=8)
    order = loop.interleaved_order([10, 10], seed=0)
    losses, start = [], [v.numpy() for v in student.trainable_variables]
    loop.run_interleaved_epoch(both, [ds, ds], order, description="xla sources", log_every=0,
                               on_batch=lambda i, loss: losses.append(loss))
    assert len(losses) == 20 and losses[-1] < losses[0] and int(opt.iterations.numpy()) == 20
    assert any(not np.array_equal(v.numpy(), w) for v, w in zip(student.trainable_variables, start))
    assert marked_for_xla(both._many.get_concrete_function({"0": iter(ds), "1": iter(ds)},
                                                            tf.constant(order[:8], tf.int32), tf.constant(8)))


def test_companion_tools_predict_evaluate_finetune(setup, finished_run):
    """The original's predict / evaluate / continued fine-tuning scripts, on the distilled model_dir."""
    from xtremedistil_tf.distill.distilled import DistilledModel
    root, teacher, task = setup
    model_dir = root / "run-default"
    finished_run("default")
    model = DistilledModel(str(model_dir))
    scores = model.evaluate()
    assert scores == json.loads((model_dir / "metrics.json").read_text())["final"]
    lines = (task / "test.tsv").read_text().splitlines()
    pred_file = root / "pred.txt"
    pred_file.write_text("".join(line.split("\t")[0] + "\n" for line in lines))
    n = model.predict_file(str(pred_file), str(root / "pred.tsv"))
    out = (root / "pred.tsv").read_text().splitlines()
    assert n == len(out) == len(lines)
    # input order is kept, and the predictions are the argmax the evaluation scored
    predicted = [int(row.split("\t")[1]) for row in out]
    gold = [int(line.split("\t")[1]) for line in lines]
    assert np.mean(np.array(predicted) == np.array(gold)) == pytest.approx(scores["test"]["accuracy"])
    assert [row.split("\t")[0] for row in out] == [line.split("\t")[0] for line in lines]
    model.fine_tune(epochs=1, patience=1, batch_size=16, learning_rate=1e-4)
    assert (model_dir / "xtremedistil-ft.weights.h5").exists()


@pytest.mark.slow  # four tiny runs, 80 s; test_distill_plan checks the same at the student's build
def test_faithful_compression_of_a_scratch_student_has_no_effect_as_in_the_original(tmp_path, minilm_dir, caplog):
    """The original set the PCA matrix on its unbuilt from-scratch student and the build replaced it: in faithful
    mode --compress_word_embedding / --freeze_word_embedding leave such a run bit-identical (with a warning); the
    default mode applies them."""
    from distill_helpers import make_teacher
    teacher = make_teacher(tmp_path / "teacher", minilm_dir, hidden=32)  # wider than the student: a real PCA
    task = make_task(tmp_path / "task", n_train=48, n_dev=16, n_test=16, n_transfer=64)
    common = dict(deterministic=True, teacher_model_dir=str(tmp_path / "teacher-ft"), distil_epochs=1, ft_epochs=1)
    # the teacher is fine-tuned once, first: a run that fine-tunes it draws other random numbers than one that loads it
    run_distillation(config(task, teacher, tmp_path / "teacher-run", mode="faithful", **common))
    runs = {}
    for name, flags in (("plain", {}), ("compress", {"compress_word_embedding": True}),
                        ("freeze", {"freeze_word_embedding": True})):
        caplog.clear()
        run_distillation(config(task, teacher, tmp_path / name, mode="faithful", **common, **flags))
        runs[name] = _weights(tmp_path / name)
        warned = any("has no effect on a from-scratch student in faithful mode" in r.getMessage()
                     for r in caplog.records)
        assert warned == bool(flags), name
    for name in ("compress", "freeze"):
        assert runs[name].keys() == runs["plain"].keys()
        assert all(np.array_equal(runs[name][k], runs["plain"][k]) for k in runs["plain"]), name
    # where compression holds: the default mode, and a faithful student from a checkpoint (as the original)
    flags = dict(compress_word_embedding=True, freeze_word_embedding=True)
    assert config(task, teacher, tmp_path / "d", mode="default", **flags).word_embeddings_frozen
    assert config(task, teacher, tmp_path / "f", mode="faithful", pt_student_checkpoint=str(teacher),
                  **flags).word_embeddings_frozen
    assert not config(task, teacher, tmp_path / "s", mode="faithful", **flags).word_embeddings_compressed


@pytest.mark.parametrize("mode", ["default", "faithful"])
def test_compressed_embeddings_come_from_the_same_teacher_when_it_is_reloaded(tmp_path, minilm_dir, mode):
    """The PCA that starts the student's word embeddings is of the teacher checkpoint's matrix (default) or of the
    fine-tuned teacher's (faithful, as the original), whether the run fine-tunes the teacher or reloads it (a
    resumed run, a shared --teacher_model_dir)."""
    from distill_helpers import make_teacher

    from xtremedistil_tf.convert.hf import read_word_embeddings
    from xtremedistil_tf.distill.student import pca_compress
    teacher = make_teacher(tmp_path / "teacher", minilm_dir, hidden=32)
    # a student from a checkpoint: faithful mode compresses only those, as the original
    student = make_teacher(tmp_path / "student", minilm_dir, hidden=16, seed=1)
    task = make_task(tmp_path / "task", n_train=48, n_dev=16, n_test=16, n_transfer=16)
    common = dict(mode=mode, compress_word_embedding=True, teacher_model_dir=str(tmp_path / "teacher-ft"),
                  ft_epochs=1, pt_student_checkpoint=str(student))
    tables = []
    for name in ("fine-tunes", "reloads"):
        run = Distillation(config(task, teacher, tmp_path / name, **common))
        run.setup()
        run.load_data()
        run.prepare_teacher()
        run.prepare_student()
        tables.append(run.student.encoder.embeddings.word_embeddings.embeddings.numpy())
    fine_tuned = run.teacher.encoder.embeddings.word_embeddings.embeddings.numpy()
    checkpoint = read_word_embeddings(str(teacher))
    np.testing.assert_array_equal(  # the matrix transformers loads
        checkpoint, transformers.BertModel.from_pretrained(teacher).embeddings.word_embeddings.weight.detach().numpy())
    assert not np.array_equal(fine_tuned, checkpoint)  # fine-tuning moved them: the two sources differ
    np.testing.assert_array_equal(tables[0], tables[1])
    np.testing.assert_array_equal(tables[0], pca_compress(fine_tuned if mode == "faithful" else checkpoint, 16))
