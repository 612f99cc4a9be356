"""Per-example distillation losses. Each returns a [batch] tensor; the loop averages over the global batch.

`mask` ([B, T], 1 for positions that count) restricts token-level losses to real tokens; the faithful mode passes
None, as the original counted pads, [CLS], [SEP] and sub-word positions.
"""
from __future__ import annotations

import tensorflow as tf


def _masked_mean(values, mask):
    """Mean over positions of a [B, T] tensor, only where mask is 1."""
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
        return _masked_mean(err, mask)
    return tf.reduce_mean(tf.reshape(err, [tf.shape(err)[0], -1]), axis=-1)


def kl_divergence(student_logits, teacher_logits, temperature=1.0, mask=None):
    """KL(teacher || student) on temperature-softened distributions, scaled by T^2 (Hinton et al.)."""
    t = tf.cast(temperature, "float32")
    p = tf.nn.softmax(tf.cast(teacher_logits, "float32") / t, axis=-1)
    log_q = tf.nn.log_softmax(tf.cast(student_logits, "float32") / t, axis=-1)
    log_p = tf.math.log(tf.maximum(p, 1e-12))
    kl = tf.reduce_sum(p * (log_p - log_q), axis=-1) * t * t
    return kl if kl.shape.rank == 1 else _masked_mean(kl, mask)


def attention_mse(student_attention, teacher_attention, mask=None):
    """MSE between attention maps [B, heads, T, T]; with a mask, only real query and key positions count."""
    err = tf.square(tf.cast(student_attention, "float32") - tf.cast(teacher_attention, "float32"))
    if mask is None:
        return tf.reduce_mean(tf.reshape(err, [tf.shape(err)[0], -1]), axis=-1)
    m = tf.cast(mask, "float32")
    pair = m[:, None, :, None] * m[:, None, None, :]
    heads = tf.cast(tf.shape(err)[1], "float32")
    return tf.reduce_sum(err * pair, axis=[1, 2, 3]) / tf.maximum(tf.reduce_sum(pair, axis=[1, 2, 3]) * heads, 1.0)


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
    return tf.square(tf.cast(predictions, "float32")[:, 0] - tf.cast(targets, "float32"))


def label_loss(kind: str, logits, labels, mask=None):
    """The hard-label loss of a task: cross-entropy, or MSE for regression."""
    return regression_mse(logits, labels) if kind == "regression" else cross_entropy(logits, labels, mask)
