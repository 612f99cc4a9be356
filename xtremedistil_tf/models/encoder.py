"""The backbone: a BERT-family transformer encoder with no task head.

One class covers BERT (and MiniLM, TinyBERT, the xtremedistil checkpoints), RoBERTa/XLM-R, ELECTRA and DistilBERT:
they differ only in position ids, token types, an embedding projection, a pooler and weight names, which are
constructor arguments here and a name map in `xtremedistil_tf.convert`.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from xtremedistil_tf.models.layers import PADDING_BIAS, Embeddings, TransformerBlock, _init, padding_bias

ARCHITECTURES = ("bert", "roberta", "xlm-roberta", "electra", "distilbert")
# The model inputs, each int32 [batch, seq]; the one definition every module uses.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


@keras.saving.register_keras_serializable(package="xtremedistil_tf")
class Encoder(keras.Model):
    """Transformer encoder taking a dict of `input_ids`, `attention_mask` and `token_type_ids` ([batch, seq]).

    Returns a dict: `sequence_output` [B, T, H]; `pooled_output` [B, H] when `use_pooler`; `hidden_states`, a list
    of num_layers + 1 tensors (embeddings, then each block); and `attentions`, a list of [B, heads, T, T]
    probabilities, when called with `output_attentions=True`; `qkv`, a list of each block's (query, key, value)
    [B, T, H] before the head split, with `output_qkv=True` (for self-attention relation losses).
    """

    def __init__(self, vocab_size=30522, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
                 hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
                 dropout=0.1, attention_dropout=0.1, initializer_range=0.02, embedding_size=None,
                 pad_token_id=0, architecture="bert", use_pooler=True, **kwargs):
        super().__init__(**kwargs)
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.dropout_rate = dropout
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range
        self.embedding_size = embedding_size or hidden_size
        self.pad_token_id = pad_token_id
        self.architecture = architecture
        self.use_pooler = use_pooler
        self.roberta_positions = architecture in ("roberta", "xlm-roberta")

        self.embeddings = Embeddings(
            vocab_size, self.embedding_size, hidden_size, max_position_embeddings, type_vocab_size,
            layer_norm_eps, dropout, initializer_range, pad_token_id=pad_token_id,
            roberta_positions=self.roberta_positions, name="embeddings", dtype=self.dtype_policy)
        self.transformer_layers = [
            TransformerBlock(hidden_size, num_heads, intermediate_size, hidden_act, layer_norm_eps, dropout,
                             attention_dropout, initializer_range, name=f"transformer_layer_{i}",
                             dtype=self.dtype_policy)
            for i in range(num_layers)
        ]
        # The additive bias of padded keys. Not a constructor argument: int8 exports lower it for the traces they
        # make (a -1e9 in the score tensor leaves int8 no resolution for the real scores), see deploy/int8.py.
        self.padding_bias_value = PADDING_BIAS
        self.pooler = None
        if use_pooler:
            self.pooler = keras.layers.Dense(hidden_size, activation="tanh",
                                             kernel_initializer=_init(initializer_range), name="pooler",
                                             dtype=self.dtype_policy)

    @property
    def max_seq_len(self) -> int:
        """The longest input the position table allows (RoBERTa spends pad_token_id + 1 positions)."""
        return self.max_position_embeddings - (self.pad_token_id + 1 if self.roberta_positions else 0)

    def build(self, input_shape=None):
        self.embeddings.build((None, None))
        for block in self.transformer_layers:
            block.build((None, None, self.hidden_size))
        if self.pooler is not None:
            self.pooler.build((None, self.hidden_size))
        self.built = True

    def call(self, inputs, training=False, output_attentions=False, output_qkv=False):
        input_ids = tf.cast(inputs["input_ids"], "int32")
        mask = inputs.get("attention_mask")
        mask = tf.ones_like(input_ids) if mask is None else tf.cast(mask, "int32")
        token_type_ids = inputs.get("token_type_ids") if self.type_vocab_size > 0 else None
        if token_type_ids is not None:
            token_type_ids = tf.cast(token_type_ids, "int32")
        mask_bias = padding_bias(mask, self.padding_bias_value)

        x = self.embeddings(input_ids, token_type_ids, training=training)
        hidden_states, attentions, qkv = [x], [], []
        for block in self.transformer_layers:
            out = block(x, mask_bias, training=training, return_qkv=output_qkv)
            x, probs = out[0], out[1]
            hidden_states.append(x)
            attentions.append(probs)
            if output_qkv:
                qkv.append(out[2])
        outputs = {"sequence_output": x, "hidden_states": hidden_states}
        if self.pooler is not None:
            outputs["pooled_output"] = self.pooler(x[:, 0])
        if output_attentions:
            outputs["attentions"] = attentions
        if output_qkv:
            outputs["qkv"] = qkv
        return outputs

    def dummy_inputs(self, batch_size=1, seq_len=8):
        """All-ones int32 inputs of every name in INPUT_NAMES, e.g. to trace or build the model."""
        return {name: tf.ones((batch_size, seq_len), "int32") for name in INPUT_NAMES}

    def get_config(self):
        """Constructor arguments (with `name`, `trainable` and the dtype policy from Keras)."""
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_act": self.hidden_act,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "dropout": self.dropout_rate,
            "attention_dropout": self.attention_dropout,
            "initializer_range": self.initializer_range,
            "embedding_size": self.embedding_size,
            "pad_token_id": self.pad_token_id,
            "architecture": self.architecture,
            "use_pooler": self.use_pooler,
        }

    @classmethod
    def from_config(cls, config):
        """Rebuilds from `get_config()`, also from configs saved before `trainable` was included."""
        return cls(**config)

    def layer_groups(self) -> list[keras.layers.Layer]:
        """Freezable units bottom-up: embeddings, each transformer block, then the pooler if any."""
        groups = [self.embeddings, *self.transformer_layers]
        return groups + ([self.pooler] if self.pooler is not None else [])
