"""Runs with every path on an object store: TF's in-memory file system (ram://) stands in for Cloud Storage (it
cannot rename a folder either). The tiny run of tests/tiny_setup.py, with its task, transfer file, teacher and
model_dir under ram://, must end with the same files, weights and scores as the same run on the local disk.

Crash safety there is shown by injected faults (ram:// lives in one process, so there is no SIGKILL): every
commit step of the file-system layer (an upload, or the store's copy of an object onto its name) is a write
point; a failure is raised at a write point (mid-file: half the bytes written, then the error; or between
files), then the same run is started again in the same process, and it must finish with the same weights as an
uninterrupted run (--deterministic), having never read the half-written object and with every finished file of
the run folder loadable at the moment of the failure.
"""
from __future__ import annotations

import os
import random
import re
import stat
import uuid
from pathlib import Path

import numpy as np
import pytest
import tiny_setup

from xtremedistil_tf import fs, io

WEIGHT_FILES = tiny_setup.COMPARED_FILES  # compared bit for bit between runs


def upload(local: Path, remote: str) -> str:
    for root, _, files in os.walk(local):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), local).replace(os.sep, "/")
            io.write_bytes(fs.join(remote, rel), Path(root, name).read_bytes())
    return remote


@pytest.fixture(scope="module")
def local_setup(tmp_path_factory, minilm_dir):
    return tiny_setup.make_setup(tmp_path_factory.mktemp("cloud-inputs"), minilm_dir)


def ram_setup(local_setup: dict) -> dict:
    """The tiny inputs copied under a fresh ram:// root."""
    root = f"ram://cloud-{uuid.uuid4().hex[:10]}"
    return {"root": root, "teacher": upload(local_setup["teacher"], f"{root}/teacher"),
            "task": upload(local_setup["task"], f"{root}/task"),
            "transfer": _upload_file(local_setup["transfer"], f"{root}/transfer.txt")}


def _upload_file(local: Path, remote: str) -> str:
    io.write_bytes(remote, local.read_bytes())
    return remote


def run_tiny(setup: dict, model_dir: str, **flags) -> dict:
    from xtremedistil_tf.distill.config import DistilConfig
    from xtremedistil_tf.distill.runner import Distillation
    values = tiny_setup.distil_flags({k: setup[k] for k in ("teacher", "task", "transfer")}, model_dir,
                                     deterministic=True, export_saved_model=True, **flags)
    return Distillation(DistilConfig(**values)).run()


def relative_files(root: str) -> set[str]:
    """The files under `root` (relative), commit markers and TensorBoard's event files (named by time, host and
    pid) left out."""
    out = set()
    for folder, dirs, files in fs.walk(root):
        if folder == root:
            dirs[:] = [d for d in dirs if d != "tensorboard"]
        rel = folder[len(root.rstrip("/")):].lstrip("/").replace(os.sep, "/")
        out.update(f"{rel}/{n}" if rel else n for n in files if n != io.COMMIT_MARKER)
    return out


def finished_files(root: str) -> list[str]:
    out = []
    for folder, dirs, files in fs.walk(root):
        dirs[:] = [d for d in dirs if not (d.startswith(".") and ".tmp" in d)]
        out.extend(fs.join(folder, n) for n in files if not (n.startswith(".") and ".tmp" in n))
    return out


# ------------------------------------------------------------------------------------------------- same outputs
@pytest.fixture(scope="module")
def local_run(local_setup, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("cloud-local") / "run"
    old = os.umask(0o022)
    try:
        metrics = run_tiny(local_setup, str(model_dir))
    finally:
        os.umask(old)
    return model_dir, metrics


def test_the_main_job_on_an_object_store_gives_the_outputs_of_a_local_run(uninterrupted, local_run):
    local_dir, local_metrics = local_run
    _, model_dir, setup, metrics = uninterrupted
    assert relative_files(model_dir) == relative_files(str(local_dir))
    assert io.committed(f"{model_dir}/hf") and io.committed(f"{model_dir}/saved_model")
    for name in WEIGHT_FILES:
        tiny_setup.assert_bit_identical(f"{model_dir}/{name}", str(local_dir / name))
    for key in ("teacher", "final", "selected_stage"):
        assert metrics[key] == local_metrics[key], key
    assert {k: (v.get("dev"), v.get("test")) for k, v in metrics["stages"].items()} == \
        {k: (v.get("dev"), v.get("test")) for k, v in local_metrics["stages"].items()}
    saved = io.read_json(f"{model_dir}/xtremedistil-config.json")
    assert saved["model_dir"] == model_dir and saved["task"] == setup["task"]  # URLs kept as given
    # The SavedModel exported to the store serves the same logits as the local one.
    import tensorflow as tf
    ids = tf.constant([[101, 2204, 3185, 102]], tf.int32)
    args = dict(input_ids=ids, attention_mask=tf.ones_like(ids), token_type_ids=tf.zeros_like(ids))
    a = tf.saved_model.load(f"{model_dir}/saved_model").signatures["serving_default"](**args)["logits"]
    b = tf.saved_model.load(str(local_dir / "saved_model")).signatures["serving_default"](**args)["logits"]
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_every_file_and_folder_the_main_job_writes_is_readable_by_others(local_run):
    """Under umask 022 every output is 0644 (files) / 0755 (folders), as open() and mkdir give."""
    model_dir, _ = local_run
    wrong = []
    for root, dirs, files in os.walk(model_dir):
        for name in dirs:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            if mode != 0o755:
                wrong.append(f"{os.path.relpath(os.path.join(root, name), model_dir)}/ {oct(mode)}")
        for name in files:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            if mode != 0o644:
                wrong.append(f"{os.path.relpath(os.path.join(root, name), model_dir)} {oct(mode)}")
    assert stat.S_IMODE(model_dir.stat().st_mode) == 0o755
    for name in ("metrics.json", "xtremedistil.weights.h5", "word_embedding.npy", "hf/model.safetensors",
                 "plots/stage_losses.png", "saved_model/saved_model.pb"):
        assert (model_dir / name).is_file(), name
    assert not wrong, "outputs others cannot read:\n" + "\n".join(wrong)


# -------------------------------------------------------------------------------------------------- crash safety
class Faults:
    """Counts the write points of a run (calls of fs.copy with a remote destination) and fails at one of them.

    mid_file: the failing write is an upload cut short (half its bytes under the destination name, as a
    preempted upload to a store without atomic uploads would leave); otherwise the error comes before the call
    (between files). The store's own copies (remote to remote) are whole or nothing, as on GCS.
    """

    def __init__(self, monkeypatch, fail_at: int | None = None, *, mid_file: bool = False):
        self.n, self.fail_at, self.mid_file = 0, fail_at, mid_file
        self.points: list[str] = []
        self.half_written: str | None = None
        real = fs.copy

        def copy(src, dst):
            if fs.is_remote(dst):
                self.n += 1
                self.points.append(("upload " if not fs.is_remote(src) else "copy ") + dst)
                if self.n == self.fail_at:
                    if self.mid_file and not fs.is_remote(src):
                        data = Path(src).read_bytes()
                        real_write(dst, data[: len(data) // 2])
                        self.half_written = dst
                    raise OSError(f"injected failure at write point {self.n}: {src} -> {dst}")
            return real(src, dst)

        monkeypatch.setattr(fs, "copy", copy)


def real_write(path: str, data: bytes) -> None:
    import tensorflow as tf
    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)


def _kind(point: str) -> str:
    """A write point's kind: the step and the destination's name with temporary tokens and numbers masked."""
    step, dst = point.split(" ", 1)
    name = re.sub(r"\.[0-9a-f]{8}\.tmp", ".X.tmp", dst.split("/run/", 1)[-1])
    return f"{step} {re.sub(r'(?<=-)[0-9]+', 'N', name)}"


@pytest.fixture(scope="module")
def uninterrupted(local_setup):
    """An uninterrupted run with every path under ram://: (its write points in order, model_dir, inputs,
    metrics)."""
    mp = pytest.MonkeyPatch()
    try:
        setup = ram_setup(local_setup)
        faults = Faults(mp)
        metrics = run_tiny(setup, f"{setup['root']}/run")
    finally:
        mp.undo()
    return faults.points, f"{setup['root']}/run", setup, metrics


def _points_to_test(points: list[str], how_many: int | None, *, mid_file: bool) -> list[int]:
    """The first write point of every kind (1-based; uploads only for mid-file failures, the store's copies
    being whole or nothing), or a seeded sample of `how_many` of them."""
    first: dict[str, int] = {}
    for i, p in enumerate(points, 1):
        if p.startswith("upload ") or not mid_file:
            first.setdefault(_kind(p), i)
    chosen = sorted(first.values())
    if how_many is not None and how_many < len(chosen):
        chosen = sorted(random.Random(20261204).sample(chosen, how_many))
    return chosen


def _fail_then_resume(local_setup, reference: str, fail_at: int, mid_file: bool, monkeypatch) -> None:
    setup = ram_setup(local_setup)
    model_dir = f"{setup['root']}/run"
    faults = Faults(monkeypatch, fail_at, mid_file=mid_file)
    try:
        run_tiny(setup, model_dir)
        # Only the plots are best-effort (a failure there is logged, the run goes on); every other write fails it.
        assert "/run/plots/" in faults.points[fail_at - 1], f"write point {fail_at} failed without stopping the run"
    except OSError as e:
        assert "injected failure" in str(e), e
    monkeypatch.undo()
    for path in finished_files(model_dir):  # nothing half-written under a final name
        try:
            tiny_setup.check_loadable(path)
        except Exception as e:  # noqa: BLE001
            raise AssertionError(f"write point {fail_at} ({faults.points[-1]}): {path} is corrupt: {e}") from e
    reads = []
    real_open = fs.open

    def open_recording(path, mode="r", **kwargs):
        reads.append(os.fspath(path))
        return real_open(path, mode, **kwargs)

    monkeypatch.setattr(fs, "open", open_recording)
    run_tiny(setup, model_dir)
    monkeypatch.undo()
    assert faults.half_written is None or faults.half_written not in reads, "the half-written object was read"
    assert not [p for p in relative_files(model_dir) if ".tmp" in p], "temporaries left behind"
    for name in WEIGHT_FILES:
        tiny_setup.assert_bit_identical(f"{model_dir}/{name}", f"{reference}/{name}")


def test_a_run_on_an_object_store_has_write_points_of_every_kind(uninterrupted):
    points = uninterrupted[0]
    kinds = {_kind(p) for p in points}
    for expected in ("upload transfer_cache/.transfer-N.tfrecord", "copy teacher/checkpoint/.committed.json",
                     "copy teacher/teacher.weights.h5", "copy teacher_outputs/chunk-N.npz",
                     "copy checkpoints/stage-N/snapshots.npz", "upload .hf.X.tmp/model.safetensors",
                     "copy saved_model/saved_model.pb", "copy metrics.json", "copy run_state.json"):
        assert any(k.startswith(expected) for k in kinds), (expected, "\n".join(sorted(kinds)))


# between-files: about 29 s; mid-file (the harder case: a half-written object) runs by default
@pytest.mark.parametrize("mid_file", [pytest.param(False, marks=pytest.mark.slow), True],
                         ids=["between-files", "mid-file"])
def test_a_failure_at_a_write_point_then_a_rerun_gives_the_uninterrupted_weights(local_setup, uninterrupted,
                                                                                 mid_file, monkeypatch):
    """One write point per variant, drawn by a seeded RNG from the kinds (the slow test takes every kind)."""
    points, reference = uninterrupted[:2]
    for k in _points_to_test(points, 1, mid_file=mid_file):
        _fail_then_resume(local_setup, reference, k, mid_file, monkeypatch)


@pytest.mark.slow  # 74 + 37 failed-and-resumed runs, about 35 min
@pytest.mark.parametrize("mid_file", [False, True], ids=["between-files", "mid-file"])
def test_a_failure_at_the_first_write_point_of_every_kind_then_a_rerun(local_setup, uninterrupted, mid_file,
                                                                       monkeypatch):
    points, reference = uninterrupted[:2]
    for k in _points_to_test(points, None, mid_file=mid_file):
        _fail_then_resume(local_setup, reference, k, mid_file, monkeypatch)


# ------------------------------------------------------------------------------------------------------ run_glue
def _sst2_folder(root: Path) -> Path:
    """An SST-2 GLUE folder (train/dev with labels, test with an index) from the tiny task's sentences."""
    folder = root / "SST-2"
    folder.mkdir(parents=True)
    task = tiny_setup.write_task(root / "rows")
    for split in ("train", "dev"):
        rows = (task / f"{split}.tsv").read_text(encoding="utf-8")
        (folder / f"{split}.tsv").write_text("sentence\tlabel\n" + rows, encoding="utf-8")
    texts = [r.split("\t")[0] for r in (task / "test.tsv").read_text(encoding="utf-8").splitlines()]
    (folder / "test.tsv").write_text("index\tsentence\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(texts)),
                                     encoding="utf-8")
    return folder


@pytest.mark.slow  # about 16 s; the main job's object-store test keeps ram:// paths by default
def test_run_glue_on_an_object_store_gives_the_outputs_of_a_local_run(local_setup, tmp_path):
    from xtremedistil_tf.apps.glue import GlueConfig, run_glue
    data = _sst2_folder(tmp_path / "glue")
    root = f"ram://glue-{uuid.uuid4().hex[:10]}"
    remote = {"model": upload(local_setup["teacher"], f"{root}/model"), "data": upload(data, f"{root}/SST-2"),
              "out": f"{root}/out"}
    local = {"model": str(local_setup["teacher"]), "data": str(data), "out": str(tmp_path / "out")}
    results = {}
    for where, paths in (("local", local), ("remote", remote)):
        results[where] = run_glue(GlueConfig(model=paths["model"], data_dir=paths["data"], task="sst2",
                                             output_dir=paths["out"], seq_len=16, batch_size=16, eval_batch_size=16,
                                             epochs=2, learning_rate=1e-3, log_every=0, deterministic=True,
                                             export_saved_model=True))
    assert results["remote"]["final"] == results["local"]["final"]
    assert relative_files(remote["out"]) == relative_files(local["out"])
    tiny_setup.assert_bit_identical(f"{remote['out']}/hf/model.safetensors", f"{local['out']}/hf/model.safetensors")
    for rel in results["local"]["predictions"].values():
        assert fs.read_bytes(f"{remote['out']}/{rel}") == fs.read_bytes(f"{local['out']}/{rel}")
    assert "run_glue configuration" in fs.read_text(f"{remote['out']}/run.log")


# ------------------------------------------------------------------------------------------------ the README job
README_JOB = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, seq_len=64, teacher_batch_size=32,
                  student_distil_batch_size=64, student_ft_batch_size=32, ft_epochs=2, distil_epochs=3, patience=1,
                  distil_chunk_size=8000, compress_word_embedding=True, deterministic=True, log_every=0)


@pytest.mark.slow  # two runs of the README's main job (MiniLM teacher, SST-2 task folder), about 9 min
def test_the_readme_main_job_with_every_path_on_an_object_store_matches_a_local_run(shared_data_dir, minilm_dir,
                                                                                    tmp_path):
    from xtremedistil_tf.distill.config import DistilConfig
    from xtremedistil_tf.distill.runner import Distillation
    task = shared_data_dir / "tasks" / "sst2-small"
    if not task.is_dir():
        pytest.skip(f"{task} is absent")
    root = f"ram://readme-{uuid.uuid4().hex[:10]}"
    remote = {"task": upload(task, f"{root}/sst2-small"), "teacher": upload(minilm_dir, f"{root}/minilm"),
              "model_dir": f"{root}/run"}
    local = {"task": str(task), "teacher": str(minilm_dir), "model_dir": str(tmp_path / "run")}
    metrics = {}
    for where, p in (("local", local), ("remote", remote)):
        cfg = DistilConfig(task=p["task"], transfer_file=fs.join(p["task"], "transfer.tsv"), model_dir=p["model_dir"],
                           pt_teacher_checkpoint=p["teacher"], **README_JOB)
        metrics[where] = Distillation(cfg).run()
    for key in ("teacher", "final", "selected_stage"):
        assert metrics["remote"][key] == metrics["local"][key], key
    assert relative_files(remote["model_dir"]) == relative_files(local["model_dir"])
    for name in WEIGHT_FILES:
        tiny_setup.assert_bit_identical(f"{remote['model_dir']}/{name}", f"{local['model_dir']}/{name}")
    print("README main job, local and ram://: final", metrics["local"]["final"], "teacher", metrics["local"]["teacher"])


def test_tfds_data_dir_reaches_tfds_unchanged(tmp_path, monkeypatch):
    """--tfds_data_dir gs://... (run_distillation.py and run_glue.py share the flag) goes to tfds.load as given."""
    import tensorflow_datasets as tfds

    from xtremedistil_tf.apps.glue import GlueConfig
    from xtremedistil_tf.data.tasks import load_task
    from xtremedistil_tf.distill.config import DistilConfig
    monkeypatch.chdir(tmp_path)
    seen = []

    def load(name, **kwargs):
        seen.append((name, kwargs.get("data_dir")))
        raise RuntimeError("stop here")

    monkeypatch.setattr(tfds, "load", load)
    with pytest.raises(Exception, match="stop here"):
        load_task("glue/sst2", tfds_data_dir="gs://bucket/tensorflow_datasets")
    assert seen == [("glue/sst2", "gs://bucket/tensorflow_datasets")]
    assert DistilConfig(task="glue/sst2", tfds_data_dir="gs://b/t").tfds_data_dir == "gs://b/t"
    assert "tfds_data_dir" in GlueConfig.NEUTRAL_KEYS and "tfds_data_dir" in DistilConfig.NEUTRAL_KEYS
    assert not (tmp_path / "gs:").exists()
