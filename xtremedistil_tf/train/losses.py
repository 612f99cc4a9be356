"""Per-example losses for training on labels, as objects a training phase lists.

Each loss returns a [batch] tensor; the step averages it over the global batch, so results do not depend on the
number of replicas. `mask` ([B, T], 1 where a position counts) restricts token-level losses to real tokens.
"""
from __future__ import annotations

import tensorflow as tf


def masked_mean(values, mask):
    """Mean over the positions of a [B, T] tensor, only where `mask` is 1 (all positions when it is None)."""
    if mask is None:
        return tf.reduce_mean(values, axis=-1)
    mask = tf.cast(mask, values.dtype)
    return tf.reduce_sum(values * mask, axis=-1) / tf.maximum(tf.reduce_sum(mask, axis=-1), 1.0)


def mse(prediction, target, mask=None):
    """Keras' 'mse': mean over the last axis, then over positions (for [B, T, D] inputs)."""
    err = tf.reduce_mean(tf.square(tf.cast(prediction, "float32") - tf.cast(target, "float32")), axis=-1)
    if err.shape.rank == 1:
        return err
    if err.shape.rank == 2:
        return masked_mean(err, mask)
    return tf.reduce_mean(tf.reshape(err, [tf.shape(err)[0], -1]), axis=-1)


def cross_entropy(logits, labels, mask=None):
    """Sparse cross-entropy from logits; token-level labels of -1 (or mask 0) are left out."""
    logits = tf.cast(logits, "float32")
    labels = tf.cast(labels, "int32")
    if logits.shape.rank == 2:
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    valid = tf.cast(labels >= 0, "float32")
    if mask is not None:
        valid *= tf.cast(mask, "float32")
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(labels, 0), logits=logits)
    return tf.reduce_sum(ce * valid, axis=-1) / tf.maximum(tf.reduce_sum(valid, axis=-1), 1.0)


def regression_mse(predictions, targets):
    """Squared error of a one-output regression head."""
    return tf.square(tf.cast(predictions, "float32")[:, 0] - tf.cast(targets, "float32"))


def masked_span_logits(logits, mask=None):
    """[B, T, 2] start/end logits in float32 with padding positions (mask 0) pushed to -1e9, so a softmax over the
    tokens gives padding no mass and a batch cut to its longest example gives the same loss as a padded one."""
    logits = tf.cast(logits, "float32")
    if mask is None:
        return logits
    return logits + (1.0 - tf.cast(mask, "float32"))[:, :, None] * -1e9


def span_cross_entropy(logits, labels, mask=None):
    """Extractive QA: the mean of the start and end cross-entropies over the tokens (Hugging Face's
    `*ForQuestionAnswering` loss); `labels` [B, 2] holds (start, end) token positions, 0 ([CLS]) for no answer."""
    logits = masked_span_logits(logits, mask)
    labels = tf.cast(labels, "int32")
    start = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels[:, 0], logits=logits[:, :, 0])
    end = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels[:, 1], logits=logits[:, :, 1])
    return (start + end) / 2.0


def label_loss(kind: str, logits, labels, mask=None):
    """The hard-label loss of a task: cross-entropy (over the tokens for start and end with `qa`), or MSE for
    regression."""
    if kind == "qa":
        return span_cross_entropy(logits, labels, mask)
    return regression_mse(logits, labels) if kind == "regression" else cross_entropy(logits, labels, mask)


class Loss:
    """A per-example loss term. `needs` names what the forward pass must produce for it (`representations`,
    `attentions`, `qkv`, `teacher`); `reads_cache` says it reads teacher outputs cached in the batch (`t_*`);
    `__call__(outputs, teacher, batch, mask)` returns a [batch] tensor."""

    needs: frozenset = frozenset()
    reads_cache: bool = False

    def __call__(self, outputs: dict, teacher: dict | None, batch: dict, mask):
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).__name__


class LabelLoss(Loss):
    """Hard labels: cross-entropy on the logits (MSE for regression)."""

    def __init__(self, kind: str):
        self.kind = kind

    def __call__(self, outputs, teacher, batch, mask):
        return label_loss(self.kind, outputs["logits"], batch["labels"], mask)

    def __repr__(self) -> str:
        return f"LabelLoss({self.kind})"
