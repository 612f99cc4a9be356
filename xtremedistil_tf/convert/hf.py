"""Hugging Face checkpoints <-> the Keras encoder: configs, the three weight formats, and state-dict export.

Reads a folder (local, or on a file system with a scheme such as gs://, through `xtremedistil_tf.fs`; or a hub id
when online) with `config.json` and `model.safetensors` (sharded too), `pytorch_model.bin` (torch's weights-only
loading, never a full unpickle) or `tf_model.h5` (HF's TF layout).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import re

import numpy as np
from absl import logging

from xtremedistil_tf import fs
from xtremedistil_tf.convert import names
from xtremedistil_tf.errors import CheckpointError
from xtremedistil_tf.models.encoder import Encoder

MODEL_TYPES = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "xlm-roberta", "electra": "electra",
               "distilbert": "distilbert"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "tf_model.h5")


@dataclasses.dataclass
class LoadedCheckpoint:
    """An encoder with its weights, the HF config it came from, and the head weights it did not use."""
    encoder: Encoder
    hf_config: dict
    heads: dict[str, np.ndarray]
    source: str


# ---------------------------------------------------------------------------------------------------------- configs
def encoder_kwargs_from_hf(cfg: dict, *, source: str = "config.json") -> dict:
    """Encoder constructor arguments from a Hugging Face config dict."""
    model_type = cfg.get("model_type", "bert")
    if model_type not in MODEL_TYPES:
        raise CheckpointError(f"{source}: model_type {model_type!r} is not supported; expected one of "
                              f"{sorted(MODEL_TYPES)}")
    arch = MODEL_TYPES[model_type]
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"{source}: position_embedding_type {cfg['position_embedding_type']!r} is not "
                              "supported (absolute only)")
    try:
        if arch == "distilbert":
            if cfg.get("sinusoidal_pos_embds"):
                raise CheckpointError(f"{source}: sinusoidal_pos_embds=true is not supported")
            return dict(vocab_size=cfg["vocab_size"], hidden_size=cfg["dim"], num_layers=cfg["n_layers"],
                        num_heads=cfg["n_heads"], intermediate_size=cfg["hidden_dim"],
                        hidden_act=cfg.get("activation", "gelu"),
                        max_position_embeddings=cfg["max_position_embeddings"], type_vocab_size=0,
                        layer_norm_eps=1e-12, dropout=cfg.get("dropout", 0.1),
                        attention_dropout=cfg.get("attention_dropout", 0.1),
                        initializer_range=cfg.get("initializer_range", 0.02),
                        pad_token_id=cfg.get("pad_token_id", 0), architecture=arch, use_pooler=False)
        return dict(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
                    num_layers=cfg["num_hidden_layers"], num_heads=cfg["num_attention_heads"],
                    intermediate_size=cfg["intermediate_size"], hidden_act=cfg.get("hidden_act", "gelu"),
                    max_position_embeddings=cfg.get("max_position_embeddings", 512),
                    type_vocab_size=cfg.get("type_vocab_size", 2),
                    layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
                    dropout=cfg.get("hidden_dropout_prob", 0.1),
                    attention_dropout=cfg.get("attention_probs_dropout_prob", 0.1),
                    initializer_range=cfg.get("initializer_range", 0.02),
                    embedding_size=cfg.get("embedding_size") if arch == "electra" else None,
                    pad_token_id=cfg.get("pad_token_id", 1 if arch in ("roberta", "xlm-roberta") else 0),
                    architecture=arch, use_pooler=arch != "electra")
    except KeyError as e:
        raise CheckpointError(f"{source}: missing key {e.args[0]!r} for model_type {model_type!r}") from None


def hf_config_from_encoder(encoder: Encoder) -> dict:
    """A Hugging Face config dict that rebuilds this encoder in transformers."""
    arch = encoder.architecture
    if arch == "distilbert":
        return {"model_type": "distilbert", "vocab_size": encoder.vocab_size, "dim": encoder.hidden_size,
                "n_layers": encoder.num_layers, "n_heads": encoder.num_heads,
                "hidden_dim": encoder.intermediate_size, "activation": encoder.hidden_act,
                "max_position_embeddings": encoder.max_position_embeddings, "dropout": encoder.dropout_rate,
                "attention_dropout": encoder.attention_dropout, "initializer_range": encoder.initializer_range,
                "pad_token_id": encoder.pad_token_id, "sinusoidal_pos_embds": False}
    cfg = {"model_type": arch, "vocab_size": encoder.vocab_size, "hidden_size": encoder.hidden_size,
           "num_hidden_layers": encoder.num_layers, "num_attention_heads": encoder.num_heads,
           "intermediate_size": encoder.intermediate_size, "hidden_act": encoder.hidden_act,
           "max_position_embeddings": encoder.max_position_embeddings,
           "type_vocab_size": encoder.type_vocab_size, "layer_norm_eps": encoder.layer_norm_eps,
           "hidden_dropout_prob": encoder.dropout_rate,
           "attention_probs_dropout_prob": encoder.attention_dropout,
           "initializer_range": encoder.initializer_range, "pad_token_id": encoder.pad_token_id,
           "position_embedding_type": "absolute"}
    if arch == "electra":
        cfg["embedding_size"] = encoder.embedding_size
    return cfg


# ---------------------------------------------------------------------------------------------------------- reading
def resolve_source(source: str) -> str:
    """A folder for `source`: itself if it is a folder (local or remote, e.g. gs://), else a hub download (fails
    clearly offline). A path with a scheme is never taken for a hub id."""
    if fs.isdir(source):
        return source
    if fs.is_remote(source) or fs.exists(source) or source.startswith((".", "/")) or source.count("/") > 1:
        raise CheckpointError(f"{source}: not a folder with config.json and weights")
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(repo_id=source, allow_patterns=[
            "*.json", "*.safetensors", "vocab.txt", "*.model", "merges.txt", "pytorch_model.bin", "tf_model.h5"])
    except Exception as e:  # noqa: BLE001 - any hub failure becomes one clear message
        raise CheckpointError(f"{source}: no such local folder, and downloading it from the Hugging Face hub "
                              f"failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def read_hf_config(folder: str) -> dict:
    """The folder's `config.json` as a dict; missing or malformed files raise CheckpointError naming them."""
    path = fs.join(folder, "config.json")
    if not fs.isfile(path):
        raise CheckpointError(f"{folder}: no config.json")
    try:
        with fs.open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: expected a JSON object of settings, found a {type(cfg).__name__}")
    return cfg


def read_state_dict(folder: str, *, allow_pickle: bool = False) -> tuple[dict[str, np.ndarray], str]:
    """All arrays of the folder's weight file as numpy, in PyTorch layout, and the file they came from."""
    st = fs.join(folder, "model.safetensors")
    index = st + ".index.json"
    binary = fs.join(folder, "pytorch_model.bin")
    h5 = fs.join(folder, "tf_model.h5")
    if fs.isfile(st):
        return _read_safetensors(st), st
    if fs.isfile(index):
        with fs.open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        out = {}
        for shard in shards:
            out.update(_read_safetensors(fs.join(folder, shard)))
        return out, index
    if fs.isfile(binary):
        return _read_torch_bin(binary, allow_pickle=allow_pickle), binary
    if fs.isfile(h5):
        return read_hf_tf_h5(h5), h5
    raise CheckpointError(f"{folder}: no weights found; expected one of {', '.join(WEIGHT_FILES)}")


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    """A local file is memory-mapped by safetensors; a remote one is read whole through `fs` and parsed in memory."""
    from safetensors import SafetensorError
    from safetensors.numpy import load, load_file
    remote = fs.is_remote(path)
    try:
        if remote:
            data = fs.read_bytes(path)
            return load(data)
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read safetensors file ({e}); is it truncated?") from None
    except TypeError:  # bfloat16 tensors: numpy cannot hold them, go through torch
        import torch
        from safetensors.torch import load as load_torch_bytes
        from safetensors.torch import load_file as load_torch
        tensors = load_torch_bytes(data) if remote else load_torch(path)
        return {k: v.to(torch.float32).numpy() for k, v in tensors.items()}


def _read_torch_bin(path: str, *, allow_pickle: bool) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{path}: reading pytorch_model.bin needs torch (pip install torch==2.13.0), or "
                              "convert it to model.safetensors") from None
    try:
        with fs.local_copy(path) as local:  # torch reads real files only
            state = torch.load(local, map_location="cpu", weights_only=not allow_pickle)
    except Exception as e:  # noqa: BLE001
        lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines() if ln.strip()]
        refused = [ln for ln in lines if "WeightsUnpickler error" in ln]
        if refused and not allow_pickle:
            raise CheckpointError(
                f"{path}: refused by weights-only loading: it holds more than plain tensors ({refused[0][:200]}), "
                "and unpickling it could run arbitrary code. If you trust the file, convert it once with `python -m "
                f"xtremedistil_tf.convert --input {fs.dirname(path) or '.'} --output <folder> --format hf "
                "--allow_pickle` and use that folder") from None
        raise CheckpointError(f"{path}: cannot load: {lines[0][:300] if lines else type(e).__name__}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict of tensors, found {type(state).__name__}")
    return {k: v.to(torch.float32).numpy() if v.is_floating_point() else v.numpy()
            for k, v in state.items() if hasattr(v, "numpy")}


_H5_RULES = [(re.compile(r"layer_\._(\d+)"), r"layer.\1"), (re.compile(r":0$"), "")]


def read_hf_tf_h5(path: str) -> dict[str, np.ndarray]:
    """Reads HF's TF-layout `tf_model.h5` and renames to PyTorch keys (kernels transposed to [out, in])."""
    with contextlib.ExitStack() as stack:
        try:
            local = stack.enter_context(fs.local_copy(path))  # h5py reads real files only
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read HDF5 file ({e})") from None
        return _read_tf_h5(local, source=path)


def _read_tf_h5(path: str, *, source: str) -> dict[str, np.ndarray]:
    import h5py
    out: dict[str, np.ndarray] = {}
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{source}: cannot read HDF5 file ({e})") from None
    with f:
        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            # HF's TF layout: <top layer group>/<model scope, e.g. tf_bert_model>/<weight path>:0, e.g.
            # bert/tf_bert_model/bert/encoder/layer_._0/... or classifier/tf_bert_for_..._classification/classifier/...
            # Drop the top group and the model scope; keep the weight path ("bert/..." or "classifier/...").
            parts = name.split("/")
            if len(parts) > 1:
                parts = parts[1:]
            if len(parts) > 1 and parts[0].startswith("tf_"):
                parts = parts[1:]
            key = "/".join(parts)
            for pattern, repl in _H5_RULES:
                key = pattern.sub(repl, key)
            key = key.replace("/", ".")
            value = np.asarray(obj)
            leaf = key.rsplit(".", 1)[-1]
            if leaf == "kernel":
                key, value = key[: -len("kernel")] + "weight", value.T
            elif leaf == "gamma":
                key = key[: -len("gamma")] + "weight"
            elif leaf == "beta":
                key = key[: -len("beta")] + "bias"
            elif leaf == "embeddings":
                key = key[: -len("embeddings")] + "weight"
            out[key] = value
        f.visititems(visit)
    return out


# ---------------------------------------------------------------------------------------------------------- loading
def _strip_prefix(state: dict[str, np.ndarray], arch: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Splits keys into encoder keys (prefix removed) and everything else (heads)."""
    prefix = names.NAME_MAPS[arch][0] + "."
    probe = "transformer.layer.0." if arch == "distilbert" else "encoder.layer.0."
    has_prefix = any(k.startswith(prefix + probe) for k in state)
    body, rest = {}, {}
    for k, v in state.items():
        if has_prefix:
            (body if k.startswith(prefix) else rest)[k[len(prefix):] if k.startswith(prefix) else k] = v
        else:
            (rest if k.startswith(names.HEAD_PREFIXES) else body)[k] = v
    return body, rest


def assign_state_dict(encoder: Encoder, state: dict[str, np.ndarray], *, source: str) -> None:
    """Copies HF-layout arrays into the encoder; one error lists every missing, unexpected or misshapen weight."""
    if not encoder.built:
        encoder.build()
    mapping = names.expand(encoder.architecture, encoder)
    missing = sorted(k for k in mapping if k not in state)
    unexpected = sorted(k for k in state if k not in mapping and not k.endswith(names.BUFFER_SUFFIXES))
    mismatched = []
    for key, (path, transpose) in mapping.items():
        if key in state:
            var = names.resolve(encoder, path)
            value = state[key].T if transpose else state[key]
            if tuple(value.shape) != tuple(var.shape):  # both in the checkpoint's own layout
                expected = tuple(var.shape)[::-1] if transpose else tuple(var.shape)
                mismatched.append(f"{key}: checkpoint {tuple(state[key].shape)} vs model {expected}")
    if missing or unexpected or mismatched:
        lines = [f"{source}: the checkpoint does not fit a {encoder.architecture} encoder of this config"]
        if missing:
            lines.append(f"  missing ({len(missing)}): " + ", ".join(missing[:20])
                         + (" ..." if len(missing) > 20 else ""))
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(unexpected[:20])
                         + (" ..." if len(unexpected) > 20 else ""))
        if mismatched:
            lines.append(f"  wrong shape ({len(mismatched)}): " + "; ".join(mismatched[:20]))
        raise CheckpointError("\n".join(lines))
    for key, (path, transpose) in mapping.items():
        var = names.resolve(encoder, path)
        value = state[key].T if transpose else state[key]
        var.assign(np.ascontiguousarray(value, dtype=var.dtype))


def load_hf_encoder(source: str, *, allow_pickle: bool = False, name: str = "encoder",
                    dtype=None) -> LoadedCheckpoint:
    """Builds an encoder from a Hugging Face folder or hub id and loads its weights."""
    folder = resolve_source(source)
    cfg = read_hf_config(folder)
    kwargs = encoder_kwargs_from_hf(cfg, source=fs.join(folder, "config.json"))
    state, weight_file = read_state_dict(folder, allow_pickle=allow_pickle)
    body, rest = _strip_prefix(state, kwargs["architecture"])
    if kwargs["use_pooler"] and "pooler.dense.weight" not in body:
        kwargs["use_pooler"] = False  # task checkpoints (token classification) are saved without a pooler
    encoder = Encoder(name=name, dtype=dtype, **kwargs)
    encoder.build()
    assign_state_dict(encoder, body, source=weight_file)
    heads = {k: v for k, v in rest.items() if not k.endswith(names.BUFFER_SUFFIXES)}
    if heads:
        logging.info("%s: %d head weights not used by the encoder: %s", weight_file, len(heads),
                     ", ".join(sorted(heads)[:10]))
    return LoadedCheckpoint(encoder=encoder, hf_config=cfg, heads=heads, source=folder)


def read_word_embeddings(source: str, *, allow_pickle: bool = False) -> np.ndarray:
    """The word-embedding matrix [vocab, width] of a Hugging Face folder or hub id, read without building its
    model."""
    folder = resolve_source(source)
    kwargs = encoder_kwargs_from_hf(read_hf_config(folder), source=fs.join(folder, "config.json"))
    state, weight_file = read_state_dict(folder, allow_pickle=allow_pickle)
    body, _ = _strip_prefix(state, kwargs["architecture"])
    if names.WORD_EMBEDDINGS not in body:
        raise CheckpointError(f"{weight_file}: no {names.WORD_EMBEDDINGS}")
    return np.asarray(body[names.WORD_EMBEDDINGS], dtype=np.float32)


def encoder_state_dict(encoder: Encoder, *, prefix: str = "") -> dict[str, np.ndarray]:
    """The encoder's weights under Hugging Face (PyTorch layout) names, ready for safetensors."""
    out = {}
    for key, (path, transpose) in names.expand(encoder.architecture, encoder).items():
        value = np.asarray(names.resolve(encoder, path).numpy(), dtype=np.float32)
        out[prefix + key] = np.ascontiguousarray(value.T if transpose else value)
    return out


# ------------------------------------------------------------------------------------------------------- task heads
def load_hf_head(task_model, state_dict: dict[str, np.ndarray], *, source: str) -> bool:
    """Loads a fine-tuned HF task head into `task_model` (a TaskModel) if `state_dict` has every weight of it.

    Returns whether it did; a head of another shape (a different number of labels) raises CheckpointError.
    """
    mapping = names.head_name_map(task_model.kind, task_model.head_style)
    if not all(k in state_dict for k in mapping):
        return False
    if not task_model.built:
        task_model.build()
    for key, (path, transpose) in mapping.items():
        var = names.resolve(task_model.head, path)
        value = state_dict[key].T if transpose else state_dict[key]
        if tuple(value.shape) != tuple(var.shape):
            raise CheckpointError(f"{source}: head weight {key} has shape {tuple(value.shape)}, the task "
                                  f"needs {tuple(var.shape)} (number of labels differs?)")
        var.assign(value)
    return True


def head_state_dict(task_model) -> dict[str, np.ndarray]:
    """The task head's weights under Hugging Face (PyTorch layout) names, the inverse of `load_hf_head`."""
    out = {}
    for key, (path, transpose) in names.head_name_map(task_model.kind, task_model.head_style).items():
        value = np.asarray(names.resolve(task_model.head, path).numpy(), np.float32)
        out[key] = np.ascontiguousarray(value.T if transpose else value)
    return out
