"""Declarative weight-name maps between Hugging Face (PyTorch layout) checkpoints and the Keras encoder and heads.

Each entry maps a Hugging Face key (without the model prefix such as `bert.`) to the encoder attribute path of the
Keras variable and whether the array must be transposed (PyTorch Linear weights are [out, in], Keras kernels are
[in, out]). `{i}` stands for the block index. `HEAD_NAME_MAPS` does the same for task heads, one table for both
loading a fine-tuned head and exporting one.
"""
from __future__ import annotations

T = True  # transpose

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"  # the same key in every architecture
_BERT_EMBEDDINGS = {
    WORD_EMBEDDINGS: ("embeddings.word_embeddings.embeddings", False),
    "embeddings.position_embeddings.weight": ("embeddings.position_embeddings.embeddings", False),
    "embeddings.token_type_embeddings.weight": ("embeddings.token_type_embeddings.embeddings", False),
    "embeddings.LayerNorm.weight": ("embeddings.layer_norm.gamma", False),
    "embeddings.LayerNorm.bias": ("embeddings.layer_norm.beta", False),
}
_BERT_BLOCK = {
    "encoder.layer.{i}.attention.self.query.weight": ("transformer_layers.{i}.attention.query.kernel", T),
    "encoder.layer.{i}.attention.self.query.bias": ("transformer_layers.{i}.attention.query.bias", False),
    "encoder.layer.{i}.attention.self.key.weight": ("transformer_layers.{i}.attention.key.kernel", T),
    "encoder.layer.{i}.attention.self.key.bias": ("transformer_layers.{i}.attention.key.bias", False),
    "encoder.layer.{i}.attention.self.value.weight": ("transformer_layers.{i}.attention.value.kernel", T),
    "encoder.layer.{i}.attention.self.value.bias": ("transformer_layers.{i}.attention.value.bias", False),
    "encoder.layer.{i}.attention.output.dense.weight": ("transformer_layers.{i}.attention_output.kernel", T),
    "encoder.layer.{i}.attention.output.dense.bias": ("transformer_layers.{i}.attention_output.bias", False),
    "encoder.layer.{i}.attention.output.LayerNorm.weight": ("transformer_layers.{i}.attention_layer_norm.gamma", False),
    "encoder.layer.{i}.attention.output.LayerNorm.bias": ("transformer_layers.{i}.attention_layer_norm.beta", False),
    "encoder.layer.{i}.intermediate.dense.weight": ("transformer_layers.{i}.intermediate.kernel", T),
    "encoder.layer.{i}.intermediate.dense.bias": ("transformer_layers.{i}.intermediate.bias", False),
    "encoder.layer.{i}.output.dense.weight": ("transformer_layers.{i}.output_dense.kernel", T),
    "encoder.layer.{i}.output.dense.bias": ("transformer_layers.{i}.output_dense.bias", False),
    "encoder.layer.{i}.output.LayerNorm.weight": ("transformer_layers.{i}.output_layer_norm.gamma", False),
    "encoder.layer.{i}.output.LayerNorm.bias": ("transformer_layers.{i}.output_layer_norm.beta", False),
}
_POOLER = {
    "pooler.dense.weight": ("pooler.kernel", T),
    "pooler.dense.bias": ("pooler.bias", False),
}
_ELECTRA_PROJECTION = {
    "embeddings_project.weight": ("embeddings.projection.kernel", T),
    "embeddings_project.bias": ("embeddings.projection.bias", False),
}
_DISTILBERT_EMBEDDINGS = {k: v for k, v in _BERT_EMBEDDINGS.items() if "token_type" not in k}
_DISTILBERT_BLOCK = {
    "transformer.layer.{i}.attention.q_lin.weight": ("transformer_layers.{i}.attention.query.kernel", T),
    "transformer.layer.{i}.attention.q_lin.bias": ("transformer_layers.{i}.attention.query.bias", False),
    "transformer.layer.{i}.attention.k_lin.weight": ("transformer_layers.{i}.attention.key.kernel", T),
    "transformer.layer.{i}.attention.k_lin.bias": ("transformer_layers.{i}.attention.key.bias", False),
    "transformer.layer.{i}.attention.v_lin.weight": ("transformer_layers.{i}.attention.value.kernel", T),
    "transformer.layer.{i}.attention.v_lin.bias": ("transformer_layers.{i}.attention.value.bias", False),
    "transformer.layer.{i}.attention.out_lin.weight": ("transformer_layers.{i}.attention_output.kernel", T),
    "transformer.layer.{i}.attention.out_lin.bias": ("transformer_layers.{i}.attention_output.bias", False),
    "transformer.layer.{i}.sa_layer_norm.weight": ("transformer_layers.{i}.attention_layer_norm.gamma", False),
    "transformer.layer.{i}.sa_layer_norm.bias": ("transformer_layers.{i}.attention_layer_norm.beta", False),
    "transformer.layer.{i}.ffn.lin1.weight": ("transformer_layers.{i}.intermediate.kernel", T),
    "transformer.layer.{i}.ffn.lin1.bias": ("transformer_layers.{i}.intermediate.bias", False),
    "transformer.layer.{i}.ffn.lin2.weight": ("transformer_layers.{i}.output_dense.kernel", T),
    "transformer.layer.{i}.ffn.lin2.bias": ("transformer_layers.{i}.output_dense.bias", False),
    "transformer.layer.{i}.output_layer_norm.weight": ("transformer_layers.{i}.output_layer_norm.gamma", False),
    "transformer.layer.{i}.output_layer_norm.bias": ("transformer_layers.{i}.output_layer_norm.beta", False),
}

# Per architecture: the model prefix task checkpoints use, and the templates.
NAME_MAPS = {
    "bert": ("bert", [_BERT_EMBEDDINGS, _BERT_BLOCK, _POOLER]),
    "roberta": ("roberta", [_BERT_EMBEDDINGS, _BERT_BLOCK, _POOLER]),
    "xlm-roberta": ("roberta", [_BERT_EMBEDDINGS, _BERT_BLOCK, _POOLER]),
    "electra": ("electra", [_BERT_EMBEDDINGS, _ELECTRA_PROJECTION, _BERT_BLOCK]),
    "distilbert": ("distilbert", [_DISTILBERT_EMBEDDINGS, _DISTILBERT_BLOCK]),
}

# Task heads, per head style (see `xtremedistil_tf.models.heads`): HF key -> (head attribute path, transpose).
# One table serves loading a fine-tuned head and exporting one. Token classification always uses the `bert` map.
HEAD_NAME_MAPS = {
    "bert": {"classifier.weight": ("classifier.kernel", T), "classifier.bias": ("classifier.bias", False)},
    "roberta": {"classifier.dense.weight": ("dense.kernel", T), "classifier.dense.bias": ("dense.bias", False),
                "classifier.out_proj.weight": ("classifier.kernel", T),
                "classifier.out_proj.bias": ("classifier.bias", False)},
    "distilbert": {"pre_classifier.weight": ("dense.kernel", T), "pre_classifier.bias": ("dense.bias", False),
                   "classifier.weight": ("classifier.kernel", T), "classifier.bias": ("classifier.bias", False)},
}
HEAD_NAME_MAPS["electra"] = HEAD_NAME_MAPS["roberta"]
# The span head of extractive question answering, the same for every architecture.
SPAN_HEAD_NAME_MAP = {"qa_outputs.weight": ("qa_outputs.kernel", T), "qa_outputs.bias": ("qa_outputs.bias", False)}

# Keys of task heads and buffers that an encoder does not use: reported, never fatal.
HEAD_PREFIXES = ("classifier.", "cls.", "lm_head.", "qa_outputs.", "discriminator_predictions.",
                 "generator_predictions.", "generator_lm_head.", "pre_classifier.", "vocab_transform.",
                 "vocab_layer_norm.", "vocab_projector.", "dropout.", "sop_classifier.")
BUFFER_SUFFIXES = ("position_ids", "token_type_ids")


def expand(architecture: str, encoder) -> dict[str, tuple[str, bool]]:
    """The full HF-key -> (Keras attribute path, transpose) map for this encoder's shape."""
    _, templates = NAME_MAPS[architecture]
    out: dict[str, tuple[str, bool]] = {}
    for template in templates:
        for key, (path, transpose) in template.items():
            if "{i}" in key:
                for i in range(encoder.num_layers):
                    out[key.format(i=i)] = (path.format(i=i), transpose)
            else:
                out[key] = (path, transpose)
    if encoder.embeddings.token_type_embeddings is None:
        out = {k: v for k, v in out.items() if "token_type_embeddings" not in k}
    if encoder.embeddings.projection is None:
        out = {k: v for k, v in out.items() if "embeddings_project" not in k}
    if encoder.pooler is None:
        out = {k: v for k, v in out.items() if not k.startswith("pooler.")}
    return out


def resolve(encoder, path: str):
    """Finds the Keras variable at an attribute path such as `transformer_layers.3.attention.query.kernel`."""
    obj = encoder
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def head_name_map(kind: str, head_style: str) -> dict[str, tuple[str, bool]]:
    """The HF-key -> (head attribute path, transpose) map of a task head of this kind and style."""
    if kind == "qa":
        return SPAN_HEAD_NAME_MAP
    return HEAD_NAME_MAPS["bert" if kind == "ner" else head_style]
