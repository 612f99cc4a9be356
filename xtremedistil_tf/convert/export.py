"""Export a Keras encoder or task model, and load any supported source.

- `export_hf`: a Hugging Face folder (config.json + model.safetensors + tokenizer files) that transformers' PyTorch
  `AutoModel` / `*ForSequenceClassification` / `*ForTokenClassification` / `*ForQuestionAnswering` load with no
  missing weights.
- `export_saved_model`: a TF SavedModel whose `serving_default` signature takes int32 `input_ids`,
  `attention_mask`, `token_type_ids` of shape [batch, seq] (both dynamic) and returns `last_hidden_state`
  (+ `pooler_output` when the encoder has a pooler) and, for a task model, `logits`.
- `save_keras` / `load_keras`: Keras weights (`model.weights.h5`) plus the model's config (`keras_config.json`)
  so the model rebuilds without code changes; serialized with `xtremedistil_tf.models.saving`, like run folders.
- `load_any`: one of our Keras folders, a Hugging Face folder or hub id, or a Google BERT checkpoint.

Every writer builds the output in a temporary folder (`xtremedistil_tf.io.atomic_dir`) and swaps it in at the end,
so a crash never leaves a half-written export under the final name. Sources and targets may be local paths or
paths with a scheme (gs://...): every file operation goes through `xtremedistil_tf.fs`.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from xtremedistil_tf import fs
from xtremedistil_tf.convert import names
from xtremedistil_tf.convert.hf import (
    encoder_state_dict,
    head_state_dict,
    hf_config_from_encoder,
    load_hf_encoder,
    load_hf_head,
    resolve_source,
)
from xtremedistil_tf.errors import CheckpointError, UserError
from xtremedistil_tf.io import COMMIT_MARKER, atomic_dir, write_json
from xtremedistil_tf.models.encoder import INPUT_NAMES, Encoder
from xtremedistil_tf.models.heads import TOKEN_KINDS, TaskModel, default_head_style
from xtremedistil_tf.models.saving import load_weights, model_from_spec, model_spec, write_weights

KERAS_CONFIG = "keras_config.json"
KERAS_WEIGHTS = "model.weights.h5"
KERAS_FORMAT = "xtremedistil_tf.keras/1"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spiece.model")
# Files that mark a folder as a previous export, which an export may replace (COMMIT_MARKER: a folder committed by
# atomic_dir on an object store).
EXPORT_MARKERS = ("config.json", "model.safetensors", "saved_model.pb", KERAS_CONFIG, COMMIT_MARKER)
HF_CLASS_PREFIX = {"bert": "Bert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta", "electra": "Electra",
                   "distilbert": "DistilBert"}
# Task models whose HF class has no pooler (`add_pooling_layer=False`, or none in the architecture).
_NO_POOLER_TASKS = {("bert", "ner"), ("roberta", "classification"), ("roberta", "regression"), ("roberta", "ner"),
                    ("xlm-roberta", "classification"), ("xlm-roberta", "regression"), ("xlm-roberta", "ner"),
                    *((arch, "qa") for arch in HF_CLASS_PREFIX)}
_HF_TASK_CLASSES = {"ner": "ForTokenClassification", "qa": "ForQuestionAnswering"}


def _split(model):
    """(encoder, task model or None) for an Encoder or a TaskModel."""
    if isinstance(model, TaskModel):
        return model.encoder, model
    if isinstance(model, Encoder):
        return model, None
    raise UserError(f"expected an Encoder or a TaskModel, got {type(model).__name__}")


def _ensure_built(model) -> None:
    if not model.built:
        model.build()


def _check_replaceable(folder: str, overwrite: bool) -> None:
    """Refuses to replace a non-empty folder that is not a previous export (its files would be deleted)."""
    if overwrite or not fs.exists(folder):
        return
    if not fs.isdir(folder):
        raise UserError(f"{folder}: exists and is not a folder")
    entries = fs.listdir(folder)
    if entries and not any(m in entries for m in EXPORT_MARKERS):
        raise UserError(f"{folder}: exists, is not empty and is not a previous export; choose another output "
                        "folder (the export replaces the whole folder)")


# ------------------------------------------------------------------------------------------------------- tokenizers
def find_tokenizer_files(folder: str | None) -> list[str]:
    """The tokenizer files (TOKENIZER_FILES) present in `folder`; none for a missing folder."""
    if not folder or not fs.isdir(folder):
        return []
    if fs.is_remote(folder):  # one listing, not a query per name (each costs requests on an object store)
        present = set(fs.listdir(folder))
        return [fs.join(folder, n) for n in TOKENIZER_FILES if n in present and fs.isfile(fs.join(folder, n))]
    return [fs.join(folder, n) for n in TOKENIZER_FILES if fs.isfile(fs.join(folder, n))]


def write_tokenizer(tokenizer, folder: str) -> list[str]:
    """Saves a tokenizer object (`save_pretrained`), or copies tokenizer files from a folder or a single file (local
    or remote) into the local folder `folder`."""
    if tokenizer is None:
        return []
    if hasattr(tokenizer, "save_pretrained"):
        return list(tokenizer.save_pretrained(folder))
    path = os.fspath(tokenizer)
    if fs.isdir(path):
        files = find_tokenizer_files(path)
        if not files:
            raise UserError(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    elif fs.isfile(path):
        files = [path]
    else:
        raise UserError(f"{path}: no such tokenizer file or folder")
    for f in files:
        fs.copy(f, fs.join(folder, fs.basename(f)))
    return [fs.join(folder, fs.basename(f)) for f in files]


# --------------------------------------------------------------------------------------------------- Hugging Face
def hf_export_config(model, label_names=None) -> dict:
    """The config.json for `export_hf`: the encoder's HF config plus architectures, labels and problem type."""
    encoder, task = _split(model)
    arch = encoder.architecture
    cfg = hf_config_from_encoder(encoder)
    prefix = HF_CLASS_PREFIX[arch]
    cfg["dtype"] = "float32"
    if task is None:
        cfg["architectures"] = [f"{prefix}Model"]
        return cfg
    cls = _HF_TASK_CLASSES.get(task.kind, "ForSequenceClassification")
    cfg["architectures"] = [prefix + cls]
    if task.kind == "qa":  # start and end logits: no labels
        return cfg
    n = task.num_labels
    if label_names is None:
        label_names = [f"LABEL_{i}" for i in range(n)]
    label_names = [str(x) for x in label_names]
    if len(label_names) != n:
        raise UserError(f"{len(label_names)} label names for a head with {n} outputs")
    if len(set(label_names)) != n:
        raise UserError(f"label names are not unique: {label_names}")
    cfg["num_labels"] = n
    cfg["id2label"] = {str(i): name for i, name in enumerate(label_names)}
    cfg["label2id"] = {name: i for i, name in enumerate(label_names)}
    if task.kind == "regression":
        cfg["problem_type"] = "regression"
    elif task.kind == "classification":
        cfg["problem_type"] = "single_label_classification"
    if task.kind != "ner":
        cfg["classifier_dropout"] = None
    return cfg


def hf_state_dict(model) -> dict[str, np.ndarray]:
    """Weights under the names of the HF class `export_hf` declares (float32, PyTorch layout)."""
    encoder, task = _split(model)
    _ensure_built(model)
    if task is None:
        return encoder_state_dict(encoder)
    arch = encoder.architecture
    if task.kind not in TOKEN_KINDS and task.head_style != default_head_style(arch):
        raise UserError(f"a {task.head_style!r} head on a {arch} encoder has no Hugging Face class; export the "
                        "encoder alone or use the architecture's own head style")
    state = encoder_state_dict(encoder, prefix=names.NAME_MAPS[arch][0] + ".")
    pooler_keys = [k for k in state if k.split(".", 1)[1].startswith("pooler.")]
    if (arch, task.kind) in _NO_POOLER_TASKS:
        for k in pooler_keys:
            del state[k]
    elif arch == "bert" and task.kind not in TOKEN_KINDS and not pooler_keys:
        raise UserError("BertForSequenceClassification needs a pooler, and this encoder has none (its head reads "
                        "the first token); export the encoder alone, or build the encoder with use_pooler=True")
    state.update(head_state_dict(task))
    return state


def export_hf(model, folder: str, *, tokenizer=None, label_names=None, overwrite: bool = False) -> str:
    """Writes a Hugging Face folder: config.json, model.safetensors and, if given, the tokenizer files.

    `tokenizer`: a transformers tokenizer, a folder holding tokenizer files, or a single file (vocab.txt).
    `label_names`: names of the task model's outputs (id2label); LABEL_i by default.
    The folder is replaced as a whole; a non-empty folder that is not a previous export is refused unless
    `overwrite`. Returns the folder.
    """
    from safetensors.numpy import save_file
    folder = os.fspath(folder)
    _check_replaceable(folder, overwrite)
    cfg = hf_export_config(model, label_names)
    state = hf_state_dict(model)
    with atomic_dir(folder) as tmp:  # a local folder, whatever `folder` is
        with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, os.path.join(tmp, "model.safetensors"),
                  metadata={"format": "pt"})
        write_tokenizer(tokenizer, tmp)
    return folder


# ------------------------------------------------------------------------------------------------------ SavedModel
def serving_function(model):
    """A function of int32 input_ids, attention_mask, token_type_ids [batch, seq] -> dict of float32 outputs."""
    import tensorflow as tf
    _, task = _split(model)

    def serve(input_ids, attention_mask, token_type_ids):  # parameters in INPUT_NAMES order
        out = model(dict(zip(INPUT_NAMES, (input_ids, attention_mask, token_type_ids))), training=False)
        result = {"last_hidden_state": tf.cast(out["sequence_output"], tf.float32)}
        if "pooled_output" in out:
            result["pooler_output"] = tf.cast(out["pooled_output"], tf.float32)
        if task is not None:
            result["logits"] = tf.cast(out["logits"], tf.float32)
        return result

    return serve


def serving_signature():
    """The SavedModel input signature: one int32 [batch, seq] tensor per name in INPUT_NAMES, both dims dynamic."""
    import tensorflow as tf
    return [tf.TensorSpec([None, None], tf.int32, name=n) for n in INPUT_NAMES]


def export_saved_model(model, path: str, *, tokenizer=None, overwrite: bool = False) -> str:
    """Writes a TF SavedModel with `serve` / `serving_default` signatures (dynamic batch and sequence length).

    Inputs: int32 `input_ids`, `attention_mask`, `token_type_ids` [batch, seq] (token types are ignored by
    architectures without them). Outputs: `last_hidden_state` [batch, seq, hidden], `pooler_output` [batch,
    hidden] when the encoder has a pooler, and `logits` for a task model. Tokenizer files, if given, go to
    `<path>/tokenizer/`.
    """
    import keras
    path = os.fspath(path)
    _check_replaceable(path, overwrite)
    _ensure_built(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serving_function(model), input_signature=serving_signature())
    with atomic_dir(path) as tmp:  # a local folder, whatever `path` is
        archive.write_out(tmp, verbose=False)
        if tokenizer is not None:
            os.makedirs(os.path.join(tmp, "tokenizer"))
            write_tokenizer(tokenizer, os.path.join(tmp, "tokenizer"))
    return path


# ----------------------------------------------------------------------------------------------------------- Keras
def save_keras(model, folder: str, *, tokenizer=None, extra: dict | None = None, overwrite: bool = False) -> str:
    """Writes `model.weights.h5` + `keras_config.json` (the serialized model config) (+ tokenizer files).

    `extra` (JSON-serialisable, e.g. label names) is stored beside the config; `load_any` returns its label names.
    The model is described and its weights written as `xtremedistil_tf.models.saving` does for run folders.
    """
    folder = os.fspath(folder)
    _check_replaceable(folder, overwrite)
    _ensure_built(model)
    doc = {"format": KERAS_FORMAT, "model": model_spec(model), "extra": extra or {}}
    with atomic_dir(folder) as tmp:  # a local folder, whatever `folder` is
        write_json(os.path.join(tmp, KERAS_CONFIG), doc)
        write_weights(model, os.path.join(tmp, KERAS_WEIGHTS))
        write_tokenizer(tokenizer, tmp)
    return folder


def _read_keras_doc(folder: str) -> dict:
    path = fs.join(folder, KERAS_CONFIG)
    try:
        with fs.open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {KERAS_CONFIG}; not a folder written by save_keras") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != KERAS_FORMAT:
        raise CheckpointError(f"{path}: unknown format {doc.get('format') if isinstance(doc, dict) else doc!r}; "
                              f"expected {KERAS_FORMAT}")
    return doc


def load_keras(folder: str):
    """Rebuilds the model saved by `save_keras` and loads its weights."""
    folder = os.fspath(folder)
    doc = _read_keras_doc(folder)
    model = model_from_spec(doc.get("model"), source=f"{folder}/{KERAS_CONFIG}")
    weights = fs.join(folder, KERAS_WEIGHTS)
    if not fs.isfile(weights):
        raise CheckpointError(f"{folder}: no {KERAS_WEIGHTS}")
    load_weights(model, weights, context=f" into the model of {KERAS_CONFIG}")
    return model


# -------------------------------------------------------------------------------------------------------- any source
@dataclasses.dataclass
class LoadedModel:
    """What `load_any` found: the Keras model (Encoder or TaskModel) and what travels with it."""
    model: object
    format: str                      # "keras", "hf" or "google"
    source: str                      # the folder (or checkpoint prefix) it was read from, local or remote
    tokenizer: str | None = None     # folder holding its tokenizer files, if any
    label_names: list | None = None  # id2label of a task model
    config: dict | None = None       # the HF / Google config it was built from
    unused: dict | None = None       # head weights the model does not use

    @property
    def encoder(self):
        """The model's encoder (the model itself when it is an Encoder)."""
        return _split(self.model)[0]


def _looks_like_path(source: str) -> bool:
    """Whether `source` is meant as a path (local, or with a scheme: gs://, ram://) rather than a hub id."""
    return (fs.is_remote(source) or source.startswith((".", "/", "~")) or os.path.isabs(source)
            or source.count("/") > 1 or "\\" in source
            or source.endswith((".json", ".h5", ".index", ".ckpt", ".safetensors", ".bin")))


def detect_format(source: str) -> str:
    """'keras', 'google', 'saved_model' or 'hf' (an HF folder, local or remote, or a hub id)."""
    from xtremedistil_tf.convert.google import is_google_checkpoint
    if fs.isdir(source):
        if fs.isfile(fs.join(source, KERAS_CONFIG)):
            return "keras"
        if fs.isfile(fs.join(source, "saved_model.pb")):
            return "saved_model"
        if is_google_checkpoint(source):
            return "google"
        return "hf"
    if is_google_checkpoint(source):
        return "google"
    if fs.exists(source):
        raise CheckpointError(f"{source}: a file; expected a model folder (or a Google checkpoint prefix)")
    if _looks_like_path(source):
        raise CheckpointError(f"{source}: no such file or folder")
    return "hf"


def _task_from_hf(loaded, cfg: dict):
    """A TaskModel when the HF checkpoint is a sequence/token classifier or a span (QA) model whose head loads;
    else None."""
    archs = cfg.get("architectures") or []
    if not archs or not loaded.heads:
        return None, None
    arch_name = archs[0]
    if arch_name.endswith("ForSequenceClassification"):
        kind = "classification"
    elif arch_name.endswith("ForTokenClassification"):
        kind = "ner"
    elif arch_name.endswith("ForQuestionAnswering"):
        kind = "qa"
    else:
        return None, None
    id2label = {} if kind == "qa" else (cfg.get("id2label") or {})
    n = len(id2label) if id2label else int(cfg.get("num_labels", 2))
    if kind == "classification" and (cfg.get("problem_type") == "regression" or n == 1):
        kind = "regression"
    task = TaskModel(loaded.encoder, n, kind, name="task_model")
    task.build()
    if not load_hf_head(task, loaded.heads, source=loaded.source):
        return None, None
    labels = [id2label.get(str(i), id2label.get(i, f"LABEL_{i}")) for i in range(n)] if id2label else None
    return task, labels


def load_any(source: str, *, allow_pickle: bool = False, task_head: bool = True) -> LoadedModel:
    """Loads a Keras folder (save_keras), a Hugging Face folder or hub id, or a Google BERT checkpoint.

    An HF sequence/token classification checkpoint gives a TaskModel with its head (unless `task_head=False`);
    everything else gives an Encoder. A SavedModel is an export target, not a source: it is refused.
    """
    source = os.fspath(source)
    fmt = detect_format(source)
    if fmt == "saved_model":
        raise CheckpointError(f"{source}: a TF SavedModel cannot be converted back; give the Keras, Hugging Face "
                              "or Google checkpoint it was exported from")
    if fmt == "keras":
        model = load_keras(source)
        extra = _read_keras_doc(source).get("extra") or {}
        return LoadedModel(model=model, format="keras", source=source,
                           tokenizer=source if find_tokenizer_files(source) else None,
                           label_names=extra.get("label_names"))
    if fmt == "google":
        from xtremedistil_tf.convert.google import load_google_checkpoint
        loaded = load_google_checkpoint(source)
        folder = source if fs.isdir(source) else fs.dirname(loaded.source)
        return LoadedModel(model=loaded.encoder, format="google", source=loaded.source,
                           tokenizer=folder if find_tokenizer_files(folder) else None,
                           config=loaded.hf_config, unused=loaded.heads)
    folder = resolve_source(source)
    loaded = load_hf_encoder(folder, allow_pickle=allow_pickle)
    model, labels = (None, None)
    if task_head:
        model, labels = _task_from_hf(loaded, loaded.hf_config)
    unused = {} if model is not None else loaded.heads
    return LoadedModel(model=model if model is not None else loaded.encoder, format="hf", source=folder,
                       tokenizer=folder if find_tokenizer_files(folder) else None, label_names=labels,
                       config=loaded.hf_config, unused=unused)
