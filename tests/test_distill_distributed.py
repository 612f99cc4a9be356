"""Distillation under tf.distribute: 2 replicas (logical CPU devices) match 1 replica; 2 workers on 127.0.0.1."""
import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distill_helpers import config, make_task, make_teacher

pytest.importorskip("torch")
HERE = Path(__file__).resolve().parent
WORKER = HERE / "distributed_worker.py"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, minilm_dir):
    root = tmp_path_factory.mktemp("dist")
    teacher = make_teacher(root / "teacher", minilm_dir, dropout=0.0)
    task = make_task(root / "task", n_train=32, n_dev=16, n_test=16, n_transfer=64)
    return root, teacher, task


def _run(cfg, replicas=1, env=None, background=False):
    args = [sys.executable, str(WORKER), json.dumps(dataclasses.asdict(cfg)), str(replicas)]
    full_env = {**os.environ, "PYTHONPATH": f"{HERE.parent}{os.pathsep}{HERE}", **(env or {})}
    if background:
        return subprocess.Popen(args, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = subprocess.run(args, env=full_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _student_weights(model_dir):
    import h5py
    out = {}
    with h5py.File(model_dir / "xtremedistil.weights.h5", "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, np.array(o)) if hasattr(o, "shape") else None)
    return out


def test_a_train_step_on_two_replicas_updates_as_one_replica():
    """The distributed step alone (a toy model, an epoch ending in a partial batch split unevenly): losses summed over
    replicas and sparse embedding gradients all-reduced give one replica's update, one step a call or several;
    and two sources' steps interleaved through one optimizer (--source_tasks) likewise, one a call or several."""
    proc = subprocess.run([sys.executable, str(HERE / "distributed_step_worker.py")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{HERE.parent}{os.pathsep}{HERE}"}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one, two, two_in_one_call, sources_one, sources_two, sources_two_in_calls_of_3 = json.loads(
        proc.stdout.rsplit("RESULT", 1)[1])
    assert (one["replicas"], two["replicas"], two_in_one_call["replicas"]) == (1, 2, 2)
    # The replicas' gradients summed without tf.custom_gradient, which would keep each traced step in memory.
    assert [r["gradient_functions_registered"] for r in (one, two, two_in_one_call)] == [0, 0, 0]
    assert len(one["losses"]) == len(two["losses"]) == 2
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-6)
    np.testing.assert_allclose(two["embeddings"], one["embeddings"], atol=1e-6)
    np.testing.assert_allclose(two["v"], one["v"], atol=1e-6)
    # Both steps in one graph call (steps_per_execution=3, the iterator ending inside the loop): the same steps.
    for key in ("losses", "embeddings", "v"):
        np.testing.assert_array_equal(two_in_one_call[key], two[key])
    rng = np.random.default_rng(0)  # the worker's initial weights
    table, w = rng.normal(size=(10, 4)), rng.normal(size=(4,))
    assert not np.allclose(one["v"], w, atol=1e-3) and not np.allclose(one["embeddings"], table, atol=1e-3)
    # Two sources interleaved through one optimizer (--source_tasks): 2 + 2 steps in the same order on both, the
    # same updates on two replicas, including source b's last step of one row (one replica gets none).
    assert (sources_one["replicas"], sources_two["replicas"]) == (1, 2)
    assert sorted(sources_one["order"]) == [0, 0, 1, 1] and sources_two["order"] == sources_one["order"]
    assert sources_one["steps"] == sources_two["steps"] == 4
    np.testing.assert_allclose(sources_two["losses"], sources_one["losses"], rtol=1e-6)
    np.testing.assert_allclose(sources_two["embeddings"], sources_one["embeddings"], atol=1e-6)
    np.testing.assert_allclose(sources_two["heads"], sources_one["heads"], atol=1e-6)
    for got, start in zip(sources_one["heads"], sources_one["start_heads"]):
        assert not np.allclose(got, start, atol=1e-3)  # each head trained by its own source
    # Calls of 3 steps (a tf.switch_case over the sources inside the loop; the epoch's 4 steps as 3 + 1): the same.
    for key in ("order", "losses", "steps", "embeddings", "heads"):
        np.testing.assert_array_equal(sources_two_in_calls_of_3[key], sources_two[key])


@pytest.mark.slow  # 1 min; the step alone on two replicas is tested above in the default run
def test_two_replicas_match_one(tiny):
    root, teacher, task = tiny
    common = dict(student_dropout=0.0, distil_epochs=1, ft_epochs=1, deterministic=True, mode="default",
                  num_hidden_layers=1,
                  student_learning_rate=1e-4, teacher_learning_rate=1e-4)
    # Same global batch: 16 on one replica, 2 x 8 on two.
    one = config(task, teacher, root / "one", teacher_model_dir=str(root / "t1"), **common)
    two = config(task, teacher, root / "two", teacher_model_dir=str(root / "t2"), strategy="mirrored",
                 teacher_batch_size=8, student_distil_batch_size=8, student_ft_batch_size=8, **common)
    _run(one)
    out = _run(two, replicas=2)
    assert "2 replica(s)" in out.stderr
    a, b = _student_weights(root / "one"), _student_weights(root / "two")
    assert a.keys() == b.keys()
    worst = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    # Adam normalises each update, so float round-off between the two reduction orders can grow to about
    # lr x steps (1e-4 x ~20 here) on parameters whose gradients are near zero; the rest agrees far more closely.
    assert worst < 1e-3, worst
    m1 = json.loads((root / "one" / "metrics.json").read_text())["final"]
    m2 = json.loads((root / "two" / "metrics.json").read_text())["final"]
    assert abs(m1["dev"]["accuracy"] - m2["dev"]["accuracy"]) <= 1 / 16 + 1e-9


@pytest.mark.slow  # 2 min; two sources' steps on two replicas are tested above in the default run
def test_two_replicas_match_one_with_several_source_tasks(tiny):
    """--source_tasks under MirroredStrategy: the sources' interleaved stages, their teachers and the shared
    student's checkpoints end where one replica's do."""
    root, teacher, task = tiny
    reviews = make_task(root / "reviews", n_train=24, n_dev=16, n_test=16, seed=1)
    common = dict(student_dropout=0.0, distil_epochs=1, ft_epochs=1, deterministic=True, mode="default",
                  num_hidden_layers=1, student_learning_rate=1e-4, teacher_learning_rate=1e-4,
                  source_tasks=str(reviews))
    one = config(task, teacher, root / "multi-one", teacher_model_dir=str(root / "mt1"), **common)
    two = config(task, teacher, root / "multi-two", teacher_model_dir=str(root / "mt2"), strategy="mirrored",
                 teacher_batch_size=8, student_distil_batch_size=8, student_ft_batch_size=8, **common)
    _run(one)
    out = _run(two, replicas=2)
    assert "2 replica(s)" in out.stderr and "on 2 sources, interleaved" in out.stderr
    for folder in ("", "sources/reviews"):  # --task's student, and the extra source's around the same encoder
        a, b = _student_weights(root / "multi-one" / folder), _student_weights(root / "multi-two" / folder)
        assert a.keys() == b.keys()
        worst = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
        assert worst < 1e-3, (folder, worst)  # as test_two_replicas_match_one
    m1 = json.loads((root / "multi-one" / "metrics.json").read_text())["final"]["dev"]
    m2 = json.loads((root / "multi-two" / "metrics.json").read_text())["final"]["dev"]
    assert set(m1) == set(m2) >= {"source_mean", "reviews/accuracy"}
    assert abs(m1["source_mean"] - m2["source_mean"]) <= 1 / 16 + 1e-9


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_localhost_finish(tiny):
    root, teacher, task = tiny
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    cfg = config(task, teacher, root / "mw", teacher_model_dir=str(root / "tmw"), strategy="multi_worker",
                 distil_epochs=1, ft_epochs=1, num_hidden_layers=1, teacher_batch_size=8, student_distil_batch_size=8,
                 student_ft_batch_size=8)
    procs = [_run(cfg, env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
                  background=True) for i in range(2)]
    outputs = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        outputs.append(out)
        assert p.returncode == 0, out[-4000:]
    assert all("FINAL" in o for o in outputs)
    assert "2 replica(s)" in outputs[0]
    # only the chief writes the run's outputs
    assert (root / "mw" / "metrics.json").exists()
    finals = [json.loads(o.rsplit("FINAL", 1)[1].strip().splitlines()[0]) for o in outputs]
    assert finals[0] == finals[1]
