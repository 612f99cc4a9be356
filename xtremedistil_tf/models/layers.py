"""Building blocks of the encoder: activations, embeddings, self-attention and the post-LN transformer block.

The layers keep the structure of the BERT family (post-LayerNorm, learned absolute positions) so that a weight
map from Hugging Face or Google checkpoints is a flat list of names. Everything runs in the layer's compute dtype,
except the attention softmax (and Keras' LayerNorm), which run in float32 so that float16 stays stable.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf


def gelu(x):
    """Exact GELU written with erf: Keras' built-in exports an Erfc op that ONNX Runtime rejects."""
    return 0.5 * x * (1.0 + tf.math.erf(x / tf.cast(math.sqrt(2.0), x.dtype)))


def gelu_tanh(x):
    """The tanh approximation (Hugging Face `gelu_new`, `gelu_pytorch_tanh`)."""
    c = tf.cast(math.sqrt(2.0 / math.pi), x.dtype)
    return 0.5 * x * (1.0 + tf.tanh(c * (x + tf.cast(0.044715, x.dtype) * tf.pow(x, 3))))


ACTIVATIONS = {
    "gelu": gelu,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "relu": tf.nn.relu,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
}


def get_activation(name: str):
    """The activation function of a Hugging Face `hidden_act` name; unknown names raise ValueError."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported hidden_act {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _init(stddev: float):
    """BERT's weight initializer: a truncated normal of this standard deviation."""
    return keras.initializers.TruncatedNormal(stddev=stddev)


PADDING_BIAS = -1e9


def padding_bias(mask, value: float = PADDING_BIAS):
    """The additive attention bias of a [B, T] mask: [B, 1, 1, T] float32, 0 for real tokens, `value` for
    padding."""
    return (1.0 - tf.cast(mask, "float32"))[:, tf.newaxis, tf.newaxis, :] * value


def dense_2d(dense: keras.layers.Dense, x, activation=None):
    """`dense` applied to a [N, in] tensor as MatMul + BiasAdd (+ activation) in the layer's compute dtype.

    Written out because Keras' Dense adds its bias with AddV2, a form TF's graph remapper does not fuse into the
    matmul; the variables stay the Dense layer's, so weight names and checkpoints do not change."""
    dtype = dense.compute_dtype
    y = tf.matmul(tf.cast(x, dtype), tf.cast(dense.kernel, dtype))
    if dense.bias is not None:
        y = tf.nn.bias_add(y, tf.cast(dense.bias, dtype))
    return activation(y) if activation is not None else y


@keras.saving.register_keras_serializable(package="xtremedistil_tf")
class Embeddings(keras.layers.Layer):
    """Word + position (+ token type) embeddings, LayerNorm, dropout, and an optional projection (ELECTRA).

    `roberta_positions` gives RoBERTa/XLM-R position ids: padding tokens get `pad_token_id`, real tokens count
    up from `pad_token_id + 1`.
    """

    def __init__(self, vocab_size, embedding_size, hidden_size, max_position_embeddings, type_vocab_size,
                 layer_norm_eps, dropout, initializer_range, pad_token_id=0, roberta_positions=False, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.pad_token_id = pad_token_id
        self.roberta_positions = roberta_positions
        self.layer_norm_eps = layer_norm_eps
        self.dropout_rate = dropout
        self.initializer_range = initializer_range
        init = _init(initializer_range)
        dt = self.dtype_policy  # sublayers do not inherit a policy passed as `dtype=`: hand it down
        self.word_embeddings = keras.layers.Embedding(vocab_size, embedding_size, embeddings_initializer=init,
                                                      name="word_embeddings", dtype=dt)
        self.position_embeddings = keras.layers.Embedding(max_position_embeddings, embedding_size,
                                                          embeddings_initializer=init, name="position_embeddings",
                                                          dtype=dt)
        self.token_type_embeddings = None
        if type_vocab_size > 0:
            self.token_type_embeddings = keras.layers.Embedding(type_vocab_size, embedding_size,
                                                                embeddings_initializer=init,
                                                                name="token_type_embeddings", dtype=dt)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="layer_norm", dtype=dt)
        self.dropout = keras.layers.Dropout(dropout, dtype=dt)
        self.projection = None
        if embedding_size != hidden_size:
            self.projection = keras.layers.Dense(hidden_size, kernel_initializer=init, name="projection", dtype=dt)

    def build(self, input_shape):
        self.word_embeddings.build(None)
        self.position_embeddings.build(None)
        if self.token_type_embeddings is not None:
            self.token_type_embeddings.build(None)
        self.layer_norm.build((None, None, self.embedding_size))
        if self.projection is not None:
            self.projection.build((None, None, self.embedding_size))
        super().build(input_shape)

    def call(self, input_ids, token_type_ids=None, training=False):
        x = self.word_embeddings(input_ids)
        if self.roberta_positions:
            mask = tf.cast(tf.not_equal(input_ids, self.pad_token_id), "int32")
            positions = tf.cumsum(mask, axis=1) * mask + self.pad_token_id
        else:
            positions = tf.range(tf.shape(input_ids)[1])[tf.newaxis, :]
        x = x + self.position_embeddings(positions)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = tf.zeros_like(input_ids)
            x = x + self.token_type_embeddings(token_type_ids)
        x = self.layer_norm(x)
        x = self.dropout(x, training=training)
        if self.projection is not None:
            x = self.projection(x)
        return x

    def get_config(self):
        """Constructor arguments (with Keras' `name`, `trainable` and dtype policy)."""
        return {**super().get_config(), "vocab_size": self.vocab_size, "embedding_size": self.embedding_size,
                "hidden_size": self.hidden_size, "max_position_embeddings": self.max_position_embeddings,
                "type_vocab_size": self.type_vocab_size, "layer_norm_eps": self.layer_norm_eps,
                "dropout": self.dropout_rate, "initializer_range": self.initializer_range,
                "pad_token_id": self.pad_token_id, "roberta_positions": self.roberta_positions}


@keras.saving.register_keras_serializable(package="xtremedistil_tf")
class SelfAttention(keras.layers.Layer):
    """Multi-head scaled dot-product self-attention with an additive padding mask."""

    def __init__(self, hidden_size, num_heads, attention_dropout, initializer_range, **kwargs):
        # No input autocasting: Keras would cast the float32 `mask_bias` to float16 under mixed_float16, where
        # -1e9 overflows to -inf. The Dense sublayers still cast `x` to the compute dtype themselves.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range
        init = _init(initializer_range)
        dt = self.dtype_policy
        self.query = keras.layers.Dense(hidden_size, kernel_initializer=init, name="query", dtype=dt)
        self.key = keras.layers.Dense(hidden_size, kernel_initializer=init, name="key", dtype=dt)
        self.value = keras.layers.Dense(hidden_size, kernel_initializer=init, name="value", dtype=dt)
        self.dropout = keras.layers.Dropout(attention_dropout, dtype=dt)
        # Which probabilities `call` returns: as softmax gave them (default), or after attention dropout, as
        # transformers' BERT returns them (faithful mode's attention targets). Not a constructor argument: it changes
        # what is reported, not what is computed.
        self.return_dropped_probs = False

    def build(self, input_shape):
        for dense in (self.query, self.key, self.value):
            dense.build((None, self.hidden_size))
        super().build(input_shape)

    def _split(self, x, b, t):
        return tf.transpose(tf.reshape(x, [b, t, self.num_heads, self.head_size]), [0, 2, 1, 3])

    def call(self, x, mask_bias, training=False, return_qkv=False):
        """(context, attention probabilities), plus (query, key, value) [B, T, H] before the head split when
        `return_qkv` (for self-attention relation losses). `x` is [B, T, H] or, inside a block, [B * T, H] with
        the batch and length given by `mask_bias` ([B, 1, 1, T]); the context has the shape of `x`."""
        # Batch and length are read from the mask, not from the Dense outputs: tf2onnx rewrites a Dense on a 3-D
        # input into a 2-D MatMul and then feeds the Shape of the 2-D tensor to these Reshapes, which ONNX Runtime
        # rejects at run time (input [B*T, H] cannot be reshaped to [B*T, H, heads, size]).
        b, t = tf.shape(mask_bias)[0], tf.shape(mask_bias)[-1]
        flat = tf.reshape(x, [-1, self.hidden_size])
        q_in, k_in, v_in = (dense_2d(d, flat) for d in (self.query, self.key, self.value))
        q, k, v = self._split(q_in, b, t), self._split(k_in, b, t), self._split(v_in, b, t)
        scores = tf.matmul(q, k, transpose_b=True)
        scores = tf.cast(scores, "float32") * (1.0 / math.sqrt(self.head_size)) + tf.cast(mask_bias, "float32")
        probs = tf.nn.softmax(scores, axis=-1)
        dropped = self.dropout(tf.cast(probs, v.dtype), training=training)
        context = tf.matmul(dropped, v)
        if self.return_dropped_probs:
            probs = tf.cast(dropped, "float32")
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), tf.shape(x))
        if return_qkv:
            shape = [b, t, self.hidden_size]
            return context, probs, tuple(tf.reshape(y, shape) for y in (q_in, k_in, v_in))
        return context, probs

    def get_config(self):
        """Constructor arguments (with Keras' `name`, `trainable` and dtype policy)."""
        return {**super().get_config(), "hidden_size": self.hidden_size, "num_heads": self.num_heads,
                "attention_dropout": self.attention_dropout, "initializer_range": self.initializer_range}


@keras.saving.register_keras_serializable(package="xtremedistil_tf")
class TransformerBlock(keras.layers.Layer):
    """Post-LN transformer block (BERT, RoBERTa, XLM-R, ELECTRA and DistilBERT share this structure)."""

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act, layer_norm_eps, dropout,
                 attention_dropout, initializer_range, **kwargs):
        kwargs.setdefault("autocast", False)  # keep `mask_bias` float32 (see SelfAttention)
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.hidden_act = hidden_act
        self.layer_norm_eps = layer_norm_eps
        self.dropout_rate = dropout
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range
        init = _init(initializer_range)
        dt = self.dtype_policy
        self.attention = SelfAttention(hidden_size, num_heads, attention_dropout, initializer_range,
                                       name="attention", dtype=dt)
        self.attention_output = keras.layers.Dense(hidden_size, kernel_initializer=init, name="attention_output",
                                                   dtype=dt)
        self.attention_layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps,
                                                                    name="attention_layer_norm", dtype=dt)
        self.intermediate = keras.layers.Dense(intermediate_size, kernel_initializer=init, name="intermediate",
                                               dtype=dt)
        self.output_dense = keras.layers.Dense(hidden_size, kernel_initializer=init, name="output", dtype=dt)
        self.output_layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="output_layer_norm",
                                                                 dtype=dt)
        self.activation = get_activation(hidden_act)
        self.dropout = keras.layers.Dropout(dropout, dtype=dt)
        self.intermediate_size = intermediate_size

    def build(self, input_shape):
        shape = (None, self.hidden_size)  # the block works on [B * T, H] (see call)
        self.attention.build(shape)
        self.attention_output.build(shape)
        self.attention_layer_norm.build(shape)
        self.intermediate.build(shape)
        self.output_dense.build((None, self.intermediate_size))
        self.output_layer_norm.build(shape)
        super().build(input_shape)

    def call(self, x, mask_bias, training=False, return_qkv=False):
        """(output, attention probabilities), plus the attention's (query, key, value) when `return_qkv`."""
        shape = tf.shape(x)
        # [B * T, H] inside the block: every Dense becomes MatMul + BiasAdd (+ activation), which TF's CPU
        # remapper fuses into one oneDNN call; on 3-D inputs Keras' Dense is Reshape, MatMul, Reshape and AddV2.
        x = tf.reshape(tf.cast(x, self.compute_dtype), [-1, self.hidden_size])  # not autocast (see __init__)
        attended = self.attention(x, mask_bias, training=training, return_qkv=return_qkv)
        context, probs = attended[0], attended[1]
        attn = self.dropout(dense_2d(self.attention_output, context), training=training)
        x = self.attention_layer_norm(x + attn)
        h = dense_2d(self.intermediate, x, self.activation)
        h = self.dropout(dense_2d(self.output_dense, h), training=training)
        out = tf.reshape(self.output_layer_norm(x + h), shape)
        return (out, probs, attended[2]) if return_qkv else (out, probs)

    def get_config(self):
        """Constructor arguments (with Keras' `name`, `trainable` and dtype policy)."""
        return {**super().get_config(), "hidden_size": self.hidden_size, "num_heads": self.num_heads,
                "intermediate_size": self.intermediate_size, "hidden_act": self.hidden_act,
                "layer_norm_eps": self.layer_norm_eps, "dropout": self.dropout_rate,
                "attention_dropout": self.attention_dropout, "initializer_range": self.initializer_range}
