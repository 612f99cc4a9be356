"""A tiny, fast distillation setup shared by the reliability tests (fault injection, bad inputs, NaN).

- a tiny random BERT teacher (hidden 32, 2 layers, 2 heads, FFN 37, the MiniLM WordPiece vocabulary of 30522) as a
  Hugging Face folder: transformers' `BertConfig` for config.json, random weights written with safetensors (no
  torch needed), and the MiniLM tokenizer files copied beside them;
- a task folder (train/dev/test.tsv, 60/20/20 rows of a synthetic sentiment task) and a transfer file (120 lines).
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_DISTILLATION = str(REPO_ROOT / "run_distillation.py")
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

TEACHER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, vocab_size=30522,
               max_position_embeddings=64, type_vocab_size=2)

_POS = "good great fine nice happy warm lovely bright funny clever".split()
_NEG = "bad poor dull sad boring cold awful weak silly slow".split()
_FILL = "the movie film story was is a very quite really and but plot cast".split()


def bert_state_dict(cfg: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random weights under BertModel's names (PyTorch layout)."""
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]

    def w(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    def ln(prefix, out):
        out[prefix + ".weight"] = np.ones(h, np.float32)
        out[prefix + ".bias"] = np.zeros(h, np.float32)

    s = {"embeddings.word_embeddings.weight": w(v, h),
         "embeddings.position_embeddings.weight": w(cfg["max_position_embeddings"], h),
         "embeddings.token_type_embeddings.weight": w(cfg["type_vocab_size"], h)}
    ln("embeddings.LayerNorm", s)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            s[p + name + ".weight"], s[p + name + ".bias"] = w(h, h), np.zeros(h, np.float32)
        ln(p + "attention.output.LayerNorm", s)
        s[p + "intermediate.dense.weight"], s[p + "intermediate.dense.bias"] = w(i, h), np.zeros(i, np.float32)
        s[p + "output.dense.weight"], s[p + "output.dense.bias"] = w(h, i), np.zeros(h, np.float32)
        ln(p + "output.LayerNorm", s)
    s["pooler.dense.weight"], s["pooler.dense.bias"] = w(h, h), np.zeros(h, np.float32)
    return s


def write_teacher(folder: Path, tokenizer_dir: Path, *, seed: int = 0, **overrides) -> Path:
    """A tiny random BERT teacher as a Hugging Face folder with the tokenizer files of `tokenizer_dir`."""
    from safetensors.numpy import save_file
    from transformers import BertConfig

    cfg = {**TEACHER, **overrides}
    folder.mkdir(parents=True, exist_ok=True)
    BertConfig(**cfg).to_json_file(str(folder / "config.json"))
    save_file(bert_state_dict(cfg, np.random.default_rng(seed)), str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, folder / name)
    return folder


def _sentence(rng: random.Random, label: int) -> str:
    words = [rng.choice(_FILL) for _ in range(rng.randint(3, 9))]
    for _ in range(rng.randint(1, 2)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(_POS if label else _NEG))
    return " ".join(words)


def write_task(folder: Path, *, seed: int = 0, sizes=(("train", 60), ("dev", 20), ("test", 20))) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes:
        rows = []
        for k in range(n):
            label = k % 2 if split != "train" else rng.randint(0, 1)
            rows.append(f"{_sentence(rng, label)}\t{label}\n")
        (folder / f"{split}.tsv").write_text("".join(rows), encoding="utf-8")
    return folder


def write_transfer(path: Path, *, n: int = 120, seed: int = 1) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(_sentence(rng, rng.randint(0, 1)) + "\n" for _ in range(n)), encoding="utf-8")
    return path


def make_setup(root: Path, tokenizer_dir: Path) -> dict[str, Path]:
    """Teacher, task folder and transfer file under `root`."""
    return {"teacher": write_teacher(root / "teacher", tokenizer_dir),
            "task": write_task(root / "task"),
            "transfer": write_transfer(root / "transfer.txt")}


def distil_flags(setup: dict[str, Path], model_dir: Path, **flags) -> dict:
    """run_distillation.py flags of the tiny run: student hidden 16, 1 layer, seq_len 16, few epochs."""
    values = {"task": setup["task"], "model_dir": model_dir, "transfer_file": setup["transfer"],
              "pt_teacher_checkpoint": setup["teacher"], "hidden_size": 16, "num_attention_heads": 2,
              "num_hidden_layers": 1, "seq_len": 16, "ft_epochs": 2, "distil_epochs": 1, "distil_chunk_size": 60,
              "patience": 2, "teacher_batch_size": 32, "student_distil_batch_size": 16, "student_ft_batch_size": 16,
              "log_every": 0, "export_saved_model": False, "cost_report": False}
    values.update(flags)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items() if v is not None}


def to_argv(values: dict) -> list[str]:
    out = []
    for name, value in values.items():
        if isinstance(value, bool):
            out.append(f"--{name}" if value else f"--no{name}")
        else:
            out.append(f"--{name}={value}")
    return out


def distil_args(setup: dict[str, Path], model_dir: Path, **flags) -> list[str]:
    return to_argv(distil_flags(setup, model_dir, **flags))


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONHASHSEED"] = "0"
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def distil_command(args: list[str]) -> list[str]:
    return [sys.executable, RUN_DISTILLATION, *args]


def run_distillation(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(distil_command(args), env=subprocess_env(), cwd=str(REPO_ROOT), capture_output=True,
                          text=True, timeout=timeout)


# Weights and arrays that must be bit-identical between an interrupted (then resumed) run and an uninterrupted one.
COMPARED_FILES = ("xtremedistil.weights.h5", "word_embedding.npy", "hf/model.safetensors", "checkpoints/selected.npz",
                  "teacher/teacher.weights.h5")


def read_arrays(path) -> dict[str, np.ndarray]:
    """Every array of an .npy, .npz, .safetensors or HDF5 file (local or on any file system of xtremedistil_tf.fs)."""
    from xtremedistil_tf import fs
    with fs.local_copy(str(path)) as local:
        if local.endswith(".npy"):
            return {"": np.load(local)}
        if local.endswith(".npz"):
            with np.load(local) as data:
                return {k: data[k] for k in data.files}
        if local.endswith(".safetensors"):
            from safetensors.numpy import load_file
            return load_file(local)
        import h5py
        out = {}
        with h5py.File(local, "r") as f:
            f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return out


def assert_bit_identical(a, b) -> None:
    """The two files hold the same arrays, bit for bit (names, dtypes, shapes, bytes)."""
    x, y = read_arrays(a), read_arrays(b)
    assert sorted(x) == sorted(y), f"{a}: different arrays: {sorted(set(x) ^ set(y))}"
    differ = [k for k in x if x[k].dtype != y[k].dtype or x[k].shape != y[k].shape or x[k].tobytes() != y[k].tobytes()]
    assert not differ, (f"{a}: {len(differ)} of {len(x)} arrays differ from {b}, e.g. "
                        + ", ".join(f"{k} (max |diff| {np.max(np.abs(x[k].astype(np.float64) - y[k])):.3g})"
                                    if x[k].shape == y[k].shape else k for k in differ[:5]))


def check_loadable(path) -> None:
    """Raises if a finished file of a run is partial or corrupt (JSON, npz, npy, HDF5, safetensors, PNG)."""
    import json

    from xtremedistil_tf import fs
    path = str(path)
    if path.endswith(".json"):
        json.loads(fs.read_text(path))
    elif path.endswith((".npz", ".npy", ".h5", ".safetensors")):
        read_arrays(path)
    elif path.endswith(".png"):
        assert fs.read_bytes(path)[-8:-4] == b"IEND", "truncated PNG"


def marked_for_xla(concrete) -> bool:
    """Whether a concrete tf.function's graph calls a function marked for XLA compilation (jit_compile)."""
    return any(f.attr.get("_XlaMustCompile") and f.attr["_XlaMustCompile"].b
               for f in concrete.graph.as_graph_def().library.function)
