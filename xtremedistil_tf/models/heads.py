"""Task heads and the task model (encoder + head), kept apart from the backbone.

Head styles follow the Hugging Face task models so a fine-tuned teacher's head loads and a student's head exports:
`bert` (dropout -> classifier on the pooled output, or on the first token when there is no pooler), `roberta` and
`electra` (dense -> activation -> out_proj on the first token), `distilbert` (pre_classifier -> ReLU -> classifier).
Token classification is dropout -> classifier on every token; extractive question answering (`qa`) is one linear
layer giving a start and an end logit per token, as Hugging Face's `*ForQuestionAnswering`. The Hugging Face
weight names of each style are converter knowledge and live in `xtremedistil_tf.convert.names`.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from xtremedistil_tf.models.encoder import Encoder
from xtremedistil_tf.models.layers import _init, gelu

TASK_KINDS = ("classification", "regression", "ner", "qa")
#: Kinds whose head gives logits for every token (a tagger; a span head's start and end): no pooler, a fixed HF
#: head, padding masked in the loss, logits padded back to the full length when batches are trimmed.
TOKEN_KINDS = ("ner", "qa")
HEAD_STYLES = ("bert", "roberta", "electra", "distilbert")


def default_head_style(architecture: str) -> str:
    """The head style of the architecture's own Hugging Face task models (XLM-R uses RoBERTa's)."""
    return {"xlm-roberta": "roberta"}.get(architecture, architecture)


@keras.saving.register_keras_serializable(package="xtremedistil_tf")
class ClassificationHead(keras.layers.Layer):
    """Sentence(-pair) logits; `num_labels=1` is a regression head."""

    def __init__(self, hidden_size, num_labels, dropout=0.1, style="bert", initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        if style not in HEAD_STYLES:
            raise ValueError(f"unknown head style {style!r}; expected one of {HEAD_STYLES}")
        self.hidden_size, self.num_labels, self.rate, self.style = hidden_size, num_labels, dropout, style
        self.initializer_range = initializer_range
        init = _init(initializer_range)
        self.dropout = keras.layers.Dropout(dropout)
        self.dense = None if style == "bert" else keras.layers.Dense(hidden_size, kernel_initializer=init,
                                                                     name="dense")
        self.classifier = keras.layers.Dense(num_labels, kernel_initializer=init, name="classifier",
                                             dtype="float32")

    def build(self, input_shape=None):
        if self.dense is not None:
            self.dense.build((None, self.hidden_size))
        self.classifier.build((None, self.hidden_size))
        self.built = True

    def call(self, encoder_outputs, training=False):
        first = encoder_outputs["sequence_output"][:, 0]
        if self.style == "bert":
            x = encoder_outputs.get("pooled_output", first)
            return self.classifier(self.dropout(x, training=training))
        if self.style == "distilbert":
            x = tf.nn.relu(self.dense(first))
            return self.classifier(self.dropout(x, training=training))
        x = self.dense(self.dropout(first, training=training))
        x = tf.tanh(x) if self.style == "roberta" else gelu(x)
        return self.classifier(self.dropout(x, training=training))

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size, "num_labels": self.num_labels,
                "dropout": self.rate, "style": self.style, "initializer_range": self.initializer_range}


@keras.saving.register_keras_serializable(package="xtremedistil_tf")
class TaggingHead(keras.layers.Layer):
    """Per-token logits for sequence tagging (NER)."""

    def __init__(self, hidden_size, num_labels, dropout=0.1, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_labels, self.rate = hidden_size, num_labels, dropout
        self.initializer_range = initializer_range
        self.dropout = keras.layers.Dropout(dropout)
        self.classifier = keras.layers.Dense(num_labels, kernel_initializer=_init(initializer_range),
                                             name="classifier", dtype="float32")
        self.style = "bert"

    def build(self, input_shape=None):
        self.classifier.build((None, None, self.hidden_size))
        self.built = True

    def call(self, encoder_outputs, training=False):
        return self.classifier(self.dropout(encoder_outputs["sequence_output"], training=training))

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size, "num_labels": self.num_labels,
                "dropout": self.rate, "initializer_range": self.initializer_range}


@keras.saving.register_keras_serializable(package="xtremedistil_tf")
class SpanHead(keras.layers.Layer):
    """Start and end logits of an answer span, [batch, tokens, 2] (`qa_outputs`, no dropout, as Hugging Face)."""

    def __init__(self, hidden_size, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.initializer_range = hidden_size, initializer_range
        self.rate = 0.0
        self.qa_outputs = keras.layers.Dense(2, kernel_initializer=_init(initializer_range), name="qa_outputs",
                                             dtype="float32")
        self.style = "bert"

    def build(self, input_shape=None):
        self.qa_outputs.build((None, None, self.hidden_size))
        self.built = True

    def call(self, encoder_outputs, training=False):
        return self.qa_outputs(encoder_outputs["sequence_output"])

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size, "initializer_range": self.initializer_range}


@keras.saving.register_keras_serializable(package="xtremedistil_tf")
class TaskModel(keras.Model):
    """Encoder + head. Returns the encoder's outputs plus `logits` (float32 under any precision policy)."""

    def __init__(self, encoder: Encoder, num_labels: int, kind: str = "classification", dropout=None,
                 head_style=None, **kwargs):
        super().__init__(**kwargs)
        if kind not in TASK_KINDS:
            raise ValueError(f"unknown task kind {kind!r}; expected one of {TASK_KINDS}")
        self.encoder = encoder
        self.kind = kind
        self.num_labels = {"regression": 1, "qa": 2}.get(kind, num_labels)
        rate = encoder.dropout_rate if dropout is None else dropout
        self.head_style = head_style or default_head_style(encoder.architecture)
        if kind == "qa":
            self.head = SpanHead(encoder.hidden_size, encoder.initializer_range, name="head")
        elif kind == "ner":
            self.head = TaggingHead(encoder.hidden_size, self.num_labels, rate, encoder.initializer_range,
                                    name="head")
        else:
            self.head = ClassificationHead(encoder.hidden_size, self.num_labels, rate, self.head_style,
                                           encoder.initializer_range, name="head")

    def build(self, input_shape=None):
        if not self.encoder.built:
            self.encoder.build()
        self.head.build()
        self.built = True

    def call(self, inputs, training=False, output_attentions=False, output_qkv=False):
        outputs = dict(self.encoder(inputs, training=training, output_attentions=output_attentions,
                                    output_qkv=output_qkv))
        outputs["logits"] = self.head(outputs, training=training)
        return outputs

    def get_config(self):
        """Constructor arguments; the encoder is nested as a serialized Keras object."""
        return {**super().get_config(), "encoder": keras.saving.serialize_keras_object(self.encoder),
                "num_labels": self.num_labels, "kind": self.kind, "dropout": self.head.rate,
                "head_style": self.head_style}

    @classmethod
    def from_config(cls, config):
        """Rebuilds from `get_config()`, also from configs saved before `trainable`/`dtype` were included."""
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
