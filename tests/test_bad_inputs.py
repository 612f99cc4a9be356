"""A corpus of bad inputs for run_distillation.py: each gives exit code != 0 and ONE clear message naming what is
wrong and where, with no traceback (unless --verbose).

The corpus is the table `CASES` below. A case starts from the tiny setup (tests/tiny_setup.py: a random BERT
teacher with the MiniLM tokenizer, a 60/20/20 task folder, a transfer file), overlays the files stored under
`tests/bad_inputs/<case id>/` (task/, teacher/, transfer.txt: broken data, label and config files), removes the
paths in `remove`, applies `make` (generated damage: truncated or misshapen weights, another vocabulary), and runs
with the flags in `flags`. Most cases run in-process through the same entry point as the script
(`cli.run_main` -> `run_distillation`); the cases marked `subprocess=True` run `run_distillation.py` as a user does,
in parallel.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import tiny_setup

CORPUS = Path(__file__).resolve().parent / "bad_inputs"


@dataclasses.dataclass
class Case:
    id: str
    expect: tuple[str, ...]               # fragments of the one error message (what is wrong, and where)
    flags: dict = dataclasses.field(default_factory=dict)
    remove: tuple[str, ...] = ()          # paths (task/..., teacher/..., transfer.txt) removed from the setup
    make: Callable | None = None          # make(root: Path) -> None: generated damage
    subprocess: bool = False              # run run_distillation.py as a subprocess
    exit_code: int = 2                    # 2: our error; 1: absl's flag parsing


# ------------------------------------------------------------------------------------------ generated damage
def _edit_config(**changes):
    def make(root: Path):
        path = root / "teacher" / "config.json"
        cfg = json.loads(path.read_text())
        for k, v in changes.items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        path.write_text(json.dumps(cfg))
    return make


def _edit_weights(fn):
    def make(root: Path):
        from safetensors.numpy import load_file, save_file
        path = root / "teacher" / "model.safetensors"
        state = load_file(str(path))
        fn(state)
        save_file(state, str(path), metadata={"format": "pt"})
    return make


def _truncate(relpath: str, keep: float = 0.5):
    def make(root: Path):
        path = root / relpath
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * keep)])
    return make


def _small_vocab_teacher(root: Path):
    """A teacher whose embedding table has 1000 rows, with the 30522-token MiniLM tokenizer beside it."""
    tiny_setup.write_teacher(root / "small", root / "teacher", vocab_size=1000)
    shutil.rmtree(root / "teacher")
    (root / "small").rename(root / "teacher")


def _student_checkpoint(**overrides):
    """A pretrained-student folder (hidden 16, 1 layer, 2 heads) beside the teacher."""
    def make(root: Path):
        model_type = overrides.pop("model_type", None)
        tiny_setup.write_teacher(root / "student", root / "teacher", hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=64, **overrides)
        if model_type:
            cfg = json.loads((root / "student" / "config.json").read_text())
            (root / "student" / "config.json").write_text(json.dumps({**cfg, "model_type": model_type}))
    return make


def _pickled_bin(root: Path):
    """pytorch_model.bin holding a pickled object (not plain tensors) in place of model.safetensors."""
    torch = pytest.importorskip("torch")
    from safetensors.numpy import load_file
    state = {k: torch.from_numpy(v) for k, v in load_file(str(root / "teacher" / "model.safetensors")).items()}
    state["_evil"] = _Pickled()
    torch.save(state, str(root / "teacher" / "pytorch_model.bin"))
    (root / "teacher" / "model.safetensors").unlink()


class _Pickled:
    """Any class: torch's weights-only unpickler refuses to build it."""


def _model_dir_under_a_file(root: Path):
    (root / "a_file").write_text("not a folder\n")


def _previous_run_other_flags(root: Path):
    from xtremedistil_tf.distill.config import DistilConfig
    values = tiny_setup.distil_flags(_setup_paths(root), root / "model_dir", seq_len=12)
    (root / "model_dir").mkdir()
    (root / "model_dir" / "xtremedistil-config.json").write_text(json.dumps(DistilConfig(**values).to_json()))


def _damaged_state(name: str, text: str):
    def make(root: Path):
        from xtremedistil_tf.distill.config import DistilConfig
        values = tiny_setup.distil_flags(_setup_paths(root), root / "model_dir")
        (root / "model_dir").mkdir(exist_ok=True)
        (root / "model_dir" / "xtremedistil-config.json").write_text(json.dumps(DistilConfig(**values).to_json()))
        (root / "model_dir" / name).write_text(text)
    return make


def _saved_teacher(damage: str):
    """teacher_model_dir (model_dir/teacher) holds a fine-tuned teacher whose weights file was cut short, or whose
    config names a model class we do not have."""
    def make(root: Path):
        from xtremedistil_tf.distill.teacher import TEACHER_CONFIG, TEACHER_WEIGHTS, build_teacher
        from xtremedistil_tf.models.saving import save_model
        model, _ = build_teacher(str(root / "teacher"), num_labels=2, kind="classification",
                                 first_token_head=False)
        folder = root / "model_dir" / "teacher"
        save_model(model, str(folder), TEACHER_WEIGHTS, TEACHER_CONFIG)
        if damage == "weights":
            _truncate(f"model_dir/teacher/{TEACHER_WEIGHTS}", 0.3)(root)
        else:
            spec = json.loads((folder / TEACHER_CONFIG).read_text())
            spec["config"]["num_labels"] = "two"
            (folder / TEACHER_CONFIG).write_text(json.dumps(spec))
    return make


def _relabel(relpath: str, line: int, label: str):
    """Replaces the label (last column) of the 1-based `line` of a task file."""
    def make(root: Path):
        path = root / relpath
        lines = path.read_text(encoding="utf-8").split("\n")
        lines[line - 1] = lines[line - 1].rsplit("\t", 1)[0] + "\t" + label
        path.write_text("\n".join(lines), encoding="utf-8")
    return make


def _drop(key):
    return lambda state: state.pop(key)


def _reshape(key, shape):
    def fn(state):
        state[key] = np.zeros(shape, np.float32)
    return fn


# --------------------------------------------------------------------------------------------------- the corpus
CASES = [
    # ---- data files (task folder)
    Case("data-wrong-column-count", ("train.tsv:3", "expected 2 tab-separated column(s)", "found 3")),
    Case("data-label-not-in-set", ("dev.tsv:2", "label '7' is not in the label set")),
    Case("data-empty-train", ("train.tsv", "empty file")),
    Case("data-blank-train", ("train.tsv", "empty file")),
    Case("data-invalid-utf8", ("test.tsv:4", "invalid UTF-8", "0xe9"), subprocess=True),
    Case("data-empty-label-column", ("train.tsv:2", "empty label column")),
    Case("data-pairwise-missing-column", ("train.tsv:1", "expected 3 tab-separated column(s)"),
         flags={"do_pairwise": True}),
    Case("data-ner-words-tags-mismatch", ("train.tsv:2", "4 word(s) but 3 tag(s)"), flags={"do_NER": True}),
    Case("data-ner-tag-not-in-labels", ("train.tsv:2", "'B-MISC' is not in the label set"),
         flags={"do_NER": True}),
    Case("data-ner-no-labels-file", ("labels.tsv", "NER task folders need labels.tsv"), flags={"do_NER": True}),
    Case("data-missing-train", ("--task=", "no train.tsv"), remove=("task/train.tsv",)),
    Case("data-train-is-folder", ("--task=", "no train.tsv")),
    Case("data-missing-task-folder", ("--task=", "no such folder"), remove=("task",)),
    Case("data-mixed-labels", ("train.tsv:7", "label 'positive' is not numeric",
                               "labels are 0/1 elsewhere in this file (first seen at line 1)", "59 numeric vs 1"),
         make=_relabel("task/train.tsv", 7, "positive")),
    Case("data-glue-no-header", ("train.tsv:1", "expected a header", "GLUE sst2"), flags={"glue_task": "sst2"}),
    Case("data-glue-unknown-task", ("--glue_task", "unknown GLUE task 'sst3'"), flags={"glue_task": "sst3"}),
    # ---- transfer file
    Case("transfer-missing", ("--transfer_file=", "no such file"), remove=("transfer.txt",)),
    Case("transfer-empty", ("transfer.txt", "empty file")),
    Case("transfer-invalid-utf8", ("transfer.txt:5", "invalid UTF-8")),
    Case("transfer-too-many-columns", ("transfer.txt:2", "column(s)", "found 3")),
    # ---- label files
    Case("labels-duplicate", ("labels.tsv:3", "duplicate label '0'")),
    Case("labels-empty", ("labels.tsv", "empty file")),
    Case("labels-train-label-missing", ("train.tsv:1", "not in the label set", "negative")),
    Case("labels-invalid-utf8", ("labels.tsv:3", "invalid UTF-8")),
    # ---- config.json of the teacher
    Case("config-invalid-json", ("config.json", "not valid JSON")),  # also run with --verbose, as a subprocess
    Case("config-not-an-object", ("config.json", "expected a JSON object")),
    Case("config-invalid-utf8", ("config.json", "not valid JSON")),
    Case("config-unknown-model-type", ("config.json", "model_type 'gpt2' is not supported"),
         make=_edit_config(model_type="gpt2")),
    Case("config-missing-key", ("config.json", "missing key 'num_attention_heads'"),
         make=_edit_config(num_attention_heads=None)),
    Case("config-missing", ("no config.json",), remove=("teacher/config.json",)),
    Case("config-relative-positions", ("position_embedding_type 'relative_key' is not supported",),
         make=_edit_config(position_embedding_type="relative_key")),
    # ---- checkpoints
    Case("ckpt-no-weights", ("teacher", "no weights found"), remove=("teacher/model.safetensors",)),
    Case("ckpt-missing-tensor", ("model.safetensors", "missing (1)", "encoder.layer.1.output.dense.weight"),
         make=_edit_weights(_drop("encoder.layer.1.output.dense.weight"))),
    Case("ckpt-wrong-shape", ("model.safetensors", "wrong shape", "encoder.layer.0.intermediate.dense.weight",
                              "checkpoint (38, 32) vs model (37, 32)"),
         make=_edit_weights(_reshape("encoder.layer.0.intermediate.dense.weight", (38, 32)))),
    Case("ckpt-truncated-safetensors", ("model.safetensors", "truncated"),
         make=_truncate("teacher/model.safetensors"), subprocess=True),
    Case("ckpt-tokenizer-vocab-mismatch", ("30522", "1000", "tokenizer"), make=_small_vocab_teacher),
    Case("ckpt-pickle-without-flag", ("pytorch_model.bin", "refused by weights-only loading", "--allow_pickle"),
         make=_pickled_bin),
    Case("ckpt-saved-teacher-truncated", ("teacher.weights.h5", "cannot load"), make=_saved_teacher("weights")),
    Case("ckpt-saved-teacher-bad-config", ("teacher-config.json", "cannot rebuild"), make=_saved_teacher("config")),
    Case("ckpt-run-state-damaged", ("run_state.json", "not valid JSON"),
         make=_damaged_state("run_state.json", '{"stages": {"1": ')),
    Case("ckpt-run-config-damaged", ("xtremedistil-config.json", "not valid JSON"),
         make=lambda root: ((root / "model_dir").mkdir(),
                            (root / "model_dir" / "xtremedistil-config.json").write_bytes(b"\x00\x00"))),
    Case("ckpt-student-vocab-mismatch", ("student", "30522 tokens", "1000 rows"),
         flags={"pt_student_checkpoint": "{root}/student"}, make=_student_checkpoint(vocab_size=1000)),
    Case("ckpt-student-not-bert", ("--pt_student_checkpoint=", "must be a BERT model", "roberta"),
         flags={"pt_student_checkpoint": "{root}/student"}, make=_student_checkpoint(model_type="roberta")),
    Case("ckpt-student-checkpoint-missing", ("--pt_student_checkpoint=", "no such folder"),
         flags={"pt_student_checkpoint": "/nonexistent/student"}),
    # ---- flags
    Case("flags-student-wider-than-teacher", ("hidden size 64", "wider than the teacher", "32"),
         flags={"hidden_size": 64}),
    Case("flags-heads-mismatch-distil-attention", ("--distil_attention", "student 4, teacher 2"),
         flags={"num_attention_heads": 4, "distil_attention": True}),
    Case("flags-student-deeper-multi-hidden", ("--distil_multi_hidden_states", "student 3 layers, teacher 2"),
         flags={"num_hidden_layers": 3, "distil_multi_hidden_states": True}),
    Case("flags-seq-len-beyond-positions", ("--seq_len=100", "beyond the position table", "teacher 64"),
         flags={"seq_len": 100}),
    Case("flags-model-dir-unwritable", ("--model_dir=", "cannot create it"),
         flags={"model_dir": "{root}/a_file/model_dir"}, make=_model_dir_under_a_file),
    Case("flags-bad-mode", ("--mode='fast'", "default", "faithful"), flags={"mode": "fast"}),
    Case("flags-hidden-not-multiple-of-heads", ("--hidden_size=16", "--num_attention_heads=3"),
         flags={"num_attention_heads": 3}),
    Case("flags-zero-batch-size", ("--student_distil_batch_size=0", "must be positive"),
         flags={"student_distil_batch_size": 0}),
    Case("flags-ner-and-pairwise", ("--do_NER and --do_pairwise",), flags={"do_NER": True, "do_pairwise": True}),
    Case("flags-qa-and-ner", ("--do_NER and --do_QA cannot be combined",), flags={"do_NER": True, "do_QA": True}),
    Case("flags-qa-window", ("--seq_len=16 leaves no room", "--max_query_length=64"), flags={"do_QA": True}),
    Case("flags-qa-doc-stride", ("--doc_stride=20", "less than the 9 context tokens"),
         flags={"do_QA": True, "max_query_length": 4, "doc_stride": 20}),
    Case("task-qa-without-train-json", ("no train.json in the task folder",), flags={"do_QA": True,
                                                                                    "max_query_length": 4,
                                                                                    "doc_stride": 2}),
    Case("flags-bad-opt-policy", ("--opt_policy='float64'",), flags={"opt_policy": "float64"}),
    Case("flags-bad-logit-loss", ("--logit_loss='l1'",), flags={"logit_loss": "l1"}),
    Case("flags-no-task", ("--task is required",), flags={"task": ""}),
    Case("flags-rerun-with-other-flags", ("holds a run with different flags", "seq_len: 12 -> 16"),
         make=_previous_run_other_flags),
    Case("flags-unknown-flag", ("Unknown command line flag 'hidden_sise'",), flags={"hidden_sise": 16},
         subprocess=True, exit_code=1),
    Case("flags-not-an-integer", ("--seq_len", "invalid literal"), flags={"seq_len": "sixteen"}, subprocess=True,
         exit_code=1),
]


def _setup_paths(root: Path) -> dict[str, Path]:
    return {"teacher": root / "teacher", "task": root / "task", "transfer": root / "transfer.txt"}


def prepare(case: Case, root: Path, base: dict[str, Path]) -> dict:
    """The case's folder: a copy of the base setup, the corpus overlay, removals and generated damage."""
    root.mkdir(parents=True)
    shutil.copytree(base["task"], root / "task")
    shutil.copytree(base["teacher"], root / "teacher")
    shutil.copy(base["transfer"], root / "transfer.txt")
    overlay = CORPUS / case.id
    if overlay.is_dir():
        for src in sorted(overlay.rglob("*")):
            if src.is_file():
                dst = root / src.relative_to(overlay)
                if dst.parent.is_file():  # a folder where the setup has a file
                    dst.parent.unlink()
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dst)
    for rel in case.remove:
        path = root / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if case.make:
        case.make(root)
    values = tiny_setup.distil_flags(_setup_paths(root), root / "model_dir")
    values.update({k: (v.format(root=root) if isinstance(v, str) else v) for k, v in case.flags.items()})
    return values


def error_message(stderr: str) -> str:
    """The error message: from the one line that starts with `error:` to the end (it may go on indented)."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(starts) == 1, f"expected one 'error:' line, found {len(starts)}:\n{stderr[-3000:]}"
    return "\n".join(lines[starts[0]:])


def check(case: Case, rc: int, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr[-4000:]
    assert rc == case.exit_code, f"exit code {rc}:\n{stderr[-3000:]}"
    if case.exit_code == 1:  # absl's flag parser: one FATAL line
        fatal = [line for line in stderr.splitlines() if "Flags parsing error" in line]
        assert len(fatal) == 1, stderr[-3000:]
        message = fatal[0]
    else:
        message = error_message(stderr)
    print(f"[{case.id}] exit {rc}: {message}")  # shown with pytest -s: the corpus' messages, for review
    for fragment in case.expect:
        assert fragment in message, f"{fragment!r} not in the message:\n{message}"


@pytest.fixture(scope="module")
def base(tmp_path_factory, minilm_dir):
    return tiny_setup.make_setup(tmp_path_factory.mktemp("base"), minilm_dir)


@pytest.fixture(scope="module")
def subprocess_results(base, tmp_path_factory):
    """Runs every subprocess=True case (and one with --verbose) at once; returns id -> (exit code, stderr)."""
    root = tmp_path_factory.mktemp("sub")
    procs = {}
    runs = [(c, False) for c in CASES if c.subprocess] + [(next(c for c in CASES if c.id == "config-invalid-json"),
                                                           True)]
    for case, verbose in runs:
        values = prepare(case, root / (case.id + ("-verbose" if verbose else "")), base)
        if verbose:
            values["verbose"] = True
        procs[(case.id, verbose)] = subprocess.Popen(
            tiny_setup.distil_command(tiny_setup.to_argv(values)), env=tiny_setup.subprocess_env(),
            cwd=str(tiny_setup.REPO_ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    for key, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        out[key] = (proc.returncode, err)
    return out


@pytest.mark.parametrize("case", [c for c in CASES if c.subprocess], ids=lambda c: c.id)
def test_bad_input_subprocess(case, subprocess_results):
    rc, stderr = subprocess_results[(case.id, False)]
    check(case, rc, stderr)


def test_verbose_shows_the_traceback(subprocess_results):
    rc, stderr = subprocess_results[("config-invalid-json", True)]
    assert rc == 2 and "Traceback" in stderr and "not valid JSON" in error_message(stderr)


@pytest.mark.parametrize("case", [c for c in CASES if not c.subprocess], ids=lambda c: c.id)
def test_bad_input(case, base, tmp_path, capsys):
    from xtremedistil_tf.cli import run_main
    from xtremedistil_tf.distill.config import DistilConfig
    from xtremedistil_tf.distill.runner import run_distillation
    values = prepare(case, tmp_path / case.id, base)
    config = DistilConfig(**values)
    capsys.readouterr()
    rc = run_main(lambda argv: run_distillation(config), [], verbose=False)
    check(case, rc, capsys.readouterr().err)


def test_corpus_size():
    assert len(CASES) >= 30
    stored = {p.name for p in CORPUS.iterdir() if p.is_dir()} - {"accepted-bom"}
    assert stored <= {c.id for c in CASES}, f"corpus folders without a case: {stored - {c.id for c in CASES}}"


def test_bom_is_handled(tmp_path):
    """A UTF-8 byte order mark (and CRLF line ends) is not part of the first text, label or transfer line."""
    from xtremedistil_tf.data.readers import iter_transfer_file
    from xtremedistil_tf.data.tasks import load_task
    task = load_task(str(CORPUS / "accepted-bom" / "task"))
    train = task.splits["train"]
    assert task.label_names == ["0", "1"]
    assert train.examples[0].text_a == "a dull film number 0" and train.examples[0].label == 0
    lines = [e.text_a for e in iter_transfer_file(str(CORPUS / "accepted-bom" / "transfer.txt"))]
    assert lines == ["a good film", "the plot was dull"]


def test_convert_refuses_a_tokenizer_that_does_not_fit(base, tmp_path, capsys):
    """`python -m xtremedistil_tf.convert` on a model whose embedding table is smaller than its tokenizer."""
    from xtremedistil_tf.convert.__main__ import main
    tiny_setup.write_teacher(tmp_path / "small", base["teacher"], vocab_size=1000)
    capsys.readouterr()
    rc = main(["--input", str(tmp_path / "small"), "--output", str(tmp_path / "out"), "--format", "keras"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    message = error_message(err)
    assert "30522 tokens" in message and "1000 rows" in message and str(tmp_path / "small") in message, message
    assert not (tmp_path / "out").exists()
