"""Google BERT TF checkpoints (`bert_config.json` + `bert_model.ckpt.*`, as released with google-research/bert).

The variable names are a declarative map onto Hugging Face keys, which `names.py` maps onto the Keras encoder.
Google dense kernels are stored [in, out] and embedding tables [vocab, dim], exactly the Keras layout, so no array
is transposed on the way in (the HF map's transposes go PyTorch -> Keras, and PyTorch is the transpose of both).
`cls/*` (the pre-training heads), fine-tuning heads (`output_weights`, `output_bias`) and optimizer slots are
reported as unused, never fatal. Folders and prefixes may be local or remote (gs://...): files are read through
`xtremedistil_tf.fs`, and TensorFlow reads remote checkpoints natively.
"""
from __future__ import annotations

import json

import numpy as np
from absl import logging

from xtremedistil_tf import fs
from xtremedistil_tf.convert import names
from xtremedistil_tf.convert.hf import LoadedCheckpoint, encoder_kwargs_from_hf
from xtremedistil_tf.errors import CheckpointError
from xtremedistil_tf.models.encoder import Encoder

CONFIG_NAMES = ("bert_config.json", "config.json")
CHECKPOINT_NAMES = ("bert_model.ckpt", "model.ckpt")

# Google variable name -> Hugging Face key (without the `bert.` prefix). `{i}` is the block index.
GOOGLE_BERT_EMBEDDINGS = {
    "bert/embeddings/word_embeddings": "embeddings.word_embeddings.weight",
    "bert/embeddings/position_embeddings": "embeddings.position_embeddings.weight",
    "bert/embeddings/token_type_embeddings": "embeddings.token_type_embeddings.weight",
    "bert/embeddings/LayerNorm/gamma": "embeddings.LayerNorm.weight",
    "bert/embeddings/LayerNorm/beta": "embeddings.LayerNorm.bias",
}
GOOGLE_BERT_BLOCK = {
    "bert/encoder/layer_{i}/attention/self/query/kernel": "encoder.layer.{i}.attention.self.query.weight",
    "bert/encoder/layer_{i}/attention/self/query/bias": "encoder.layer.{i}.attention.self.query.bias",
    "bert/encoder/layer_{i}/attention/self/key/kernel": "encoder.layer.{i}.attention.self.key.weight",
    "bert/encoder/layer_{i}/attention/self/key/bias": "encoder.layer.{i}.attention.self.key.bias",
    "bert/encoder/layer_{i}/attention/self/value/kernel": "encoder.layer.{i}.attention.self.value.weight",
    "bert/encoder/layer_{i}/attention/self/value/bias": "encoder.layer.{i}.attention.self.value.bias",
    "bert/encoder/layer_{i}/attention/output/dense/kernel": "encoder.layer.{i}.attention.output.dense.weight",
    "bert/encoder/layer_{i}/attention/output/dense/bias": "encoder.layer.{i}.attention.output.dense.bias",
    "bert/encoder/layer_{i}/attention/output/LayerNorm/gamma": "encoder.layer.{i}.attention.output.LayerNorm.weight",
    "bert/encoder/layer_{i}/attention/output/LayerNorm/beta": "encoder.layer.{i}.attention.output.LayerNorm.bias",
    "bert/encoder/layer_{i}/intermediate/dense/kernel": "encoder.layer.{i}.intermediate.dense.weight",
    "bert/encoder/layer_{i}/intermediate/dense/bias": "encoder.layer.{i}.intermediate.dense.bias",
    "bert/encoder/layer_{i}/output/dense/kernel": "encoder.layer.{i}.output.dense.weight",
    "bert/encoder/layer_{i}/output/dense/bias": "encoder.layer.{i}.output.dense.bias",
    "bert/encoder/layer_{i}/output/LayerNorm/gamma": "encoder.layer.{i}.output.LayerNorm.weight",
    "bert/encoder/layer_{i}/output/LayerNorm/beta": "encoder.layer.{i}.output.LayerNorm.bias",
}
GOOGLE_BERT_POOLER = {
    "bert/pooler/dense/kernel": "pooler.dense.weight",
    "bert/pooler/dense/bias": "pooler.dense.bias",
}
# Names that are not weights of any model (training state): skipped silently.
OPTIMIZER_SUFFIXES = ("/adam_m", "/adam_v", "/Adam", "/Adam_1", "/ExponentialMovingAverage")
OPTIMIZER_NAMES = ("global_step", "beta1_power", "beta2_power", "good_steps", "loss_scale")
# Names that belong to heads the encoder does not use: reported, never fatal.
GOOGLE_HEAD_PREFIXES = ("cls/", "output_weights", "output_bias", "loss/", "classifier/")


def google_name_map(num_layers: int, *, pooler: bool = True, token_types: bool = True) -> dict[str, str]:
    """Google variable name -> HF key for a BERT of `num_layers` blocks."""
    out = dict(GOOGLE_BERT_EMBEDDINGS)
    if not token_types:
        out.pop("bert/embeddings/token_type_embeddings")
    for i in range(num_layers):
        out.update({k.format(i=i): v.format(i=i) for k, v in GOOGLE_BERT_BLOCK.items()})
    if pooler:
        out.update(GOOGLE_BERT_POOLER)
    return out


def find_google_checkpoint(source: str, *, config_path: str | None = None,
                           checkpoint_path: str | None = None) -> tuple[str, str]:
    """(config path, checkpoint prefix) for a Google BERT folder, or for explicit paths."""
    folder = source if source and fs.isdir(source) else fs.dirname(source or checkpoint_path or "")
    if checkpoint_path is None:
        if source and not fs.isdir(source):
            checkpoint_path = source
        else:
            checkpoint_path = _find_prefix(folder)
    if checkpoint_path.endswith(".index") or ".data-" in checkpoint_path:
        checkpoint_path = checkpoint_path.rsplit(".index", 1)[0] if checkpoint_path.endswith(".index") \
            else checkpoint_path.split(".data-")[0]
    if not fs.isfile(checkpoint_path + ".index"):
        raise CheckpointError(f"{checkpoint_path}: no TF checkpoint here (expected {checkpoint_path}.index and "
                              f"{checkpoint_path}.data-*)")
    if config_path is None:
        ckpt_folder = fs.dirname(checkpoint_path) or "."
        candidates = [fs.join(d, n) for d in dict.fromkeys((folder or ".", ckpt_folder)) for n in CONFIG_NAMES]
        config_path = next((c for c in candidates if fs.isfile(c)), None)
        if config_path is None:
            raise CheckpointError(f"{folder or ckpt_folder}: no bert_config.json beside the checkpoint")
    elif not fs.isfile(config_path):
        raise CheckpointError(f"{config_path}: no such config file")
    return config_path, checkpoint_path


def _find_prefix(folder: str) -> str:
    if not fs.isdir(folder):
        raise CheckpointError(f"{folder}: no such folder")
    for name in CHECKPOINT_NAMES:
        if fs.isfile(fs.join(folder, name + ".index")):
            return fs.join(folder, name)
    import tensorflow as tf
    latest = tf.train.latest_checkpoint(folder)
    if latest:
        return latest
    indexes = fs.glob(fs.join(folder, "*.index"))
    if len(indexes) == 1:
        return indexes[0][: -len(".index")]
    if indexes:
        raise CheckpointError(f"{folder}: several TF checkpoints ({', '.join(fs.basename(i) for i in indexes)}); "
                              "name one explicitly")
    raise CheckpointError(f"{folder}: no TF checkpoint (bert_model.ckpt.index) found")


def is_google_checkpoint(source: str) -> bool:
    """Whether `source` looks like a Google BERT checkpoint (folder with bert_config.json and a *.ckpt*.index)."""
    if fs.isfile(source + ".index") or (fs.isfile(source) and source.endswith(".index")):
        return True
    if not fs.isdir(source):
        return False
    has_index = bool(fs.glob(fs.join(source, "*.index")))
    return has_index and fs.isfile(fs.join(source, "bert_config.json"))


def read_google_config(path: str) -> dict:
    """The Hugging Face style config dict of a Google `bert_config.json` (model_type bert)."""
    try:
        with fs.open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read the BERT config ({e})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    cfg = dict(cfg)
    cfg.setdefault("model_type", "bert")
    if cfg["model_type"] != "bert":
        raise CheckpointError(f"{path}: Google checkpoints are BERT; model_type is {cfg['model_type']!r}")
    return cfg


def read_google_checkpoint(checkpoint_path: str) -> dict[str, np.ndarray]:
    """Every variable of a TF checkpoint, by name, as numpy (optimizer state left out).

    TensorFlow reads remote checkpoints (gs://...) itself; the path is passed unchanged.
    """
    import tensorflow as tf
    try:
        if fs.is_remote(checkpoint_path) and fs.isfile(checkpoint_path + ".index"):
            # A prefix: read it as one. (load_checkpoint would take a prefix for a folder on stores that report
            # every name prefix as a folder, as ram:// does.)
            reader = tf.compat.v1.train.NewCheckpointReader(checkpoint_path)
        else:
            reader = tf.train.load_checkpoint(checkpoint_path)
        shapes = reader.get_variable_to_shape_map()
        return {name: reader.get_tensor(name) for name in shapes
                if name not in OPTIMIZER_NAMES and not name.endswith(OPTIMIZER_SUFFIXES)}
    except (tf.errors.OpError, ValueError, OSError) as e:
        raise CheckpointError(f"{checkpoint_path}: cannot read the TF checkpoint "
                              f"({str(e).splitlines()[0][:300]}); is it truncated?") from None


def google_to_hf_state_dict(variables: dict[str, np.ndarray], num_layers: int) -> dict[str, np.ndarray]:
    """Google variables renamed to HF keys in PyTorch layout (kernels transposed), for a PyTorch reference."""
    mapping = google_name_map(num_layers)
    out = {}
    for name, hf_key in mapping.items():
        if name in variables:
            value = variables[name]
            out[hf_key] = np.ascontiguousarray(value.T) if name.endswith("kernel") else value
    return out


def load_google_checkpoint(source: str | None = None, *, config_path: str | None = None,
                           checkpoint_path: str | None = None, name: str = "encoder",
                           dtype=None) -> LoadedCheckpoint:
    """Builds a BERT encoder from a Google checkpoint folder (or explicit paths) and loads its weights.

    Raises one CheckpointError listing every missing, unexpected and wrongly shaped variable (by Google name).
    Head variables (`cls/*`, `output_weights`, ...) are returned in `heads` and logged, not fatal.
    """
    config_path, checkpoint_path = find_google_checkpoint(source or "", config_path=config_path,
                                                          checkpoint_path=checkpoint_path)
    cfg = read_google_config(config_path)
    kwargs = encoder_kwargs_from_hf(cfg, source=config_path)
    variables = read_google_checkpoint(checkpoint_path)
    if "bert/pooler/dense/kernel" not in variables:
        kwargs["use_pooler"] = False
    encoder = Encoder(name=name, dtype=dtype, **kwargs)
    encoder.build()
    hf_to_keras = names.expand("bert", encoder)
    mapping = google_name_map(encoder.num_layers, pooler=encoder.pooler is not None,
                              token_types=encoder.embeddings.token_type_embeddings is not None)

    heads = {k: v for k, v in variables.items() if k.startswith(GOOGLE_HEAD_PREFIXES)}
    missing = sorted(k for k in mapping if k not in variables)
    unexpected = sorted(k for k in variables if k not in mapping and k not in heads)
    mismatched = []
    for gname, hf_key in mapping.items():
        if gname in variables:
            var = names.resolve(encoder, hf_to_keras[hf_key][0])
            if tuple(variables[gname].shape) != tuple(var.shape):
                mismatched.append(f"{gname}: checkpoint {tuple(variables[gname].shape)} vs model {tuple(var.shape)}")
    if missing or unexpected or mismatched:
        lines = [f"{checkpoint_path}: the checkpoint does not fit the BERT encoder of {config_path}"]
        for label, items, sep in (("missing", missing, ", "), ("unexpected", unexpected, ", "),
                                  ("wrong shape", mismatched, "; ")):
            if items:
                lines.append(f"  {label} ({len(items)}): " + sep.join(items[:20]) + (" ..." if len(items) > 20 else ""))
        raise CheckpointError("\n".join(lines))
    for gname, hf_key in mapping.items():
        var = names.resolve(encoder, hf_to_keras[hf_key][0])
        var.assign(np.ascontiguousarray(variables[gname], dtype=var.dtype))
    if heads:
        logging.info("%s: %d head variables not used by the encoder: %s", checkpoint_path, len(heads),
                     ", ".join(sorted(heads)[:10]))
    return LoadedCheckpoint(encoder=encoder, hf_config=cfg, heads=heads, source=checkpoint_path)
