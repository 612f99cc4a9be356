"""Distillation losses as objects a stage lists: each returns a [batch] tensor (see `train.losses.Loss`).

`mask` ([B, T], 1 where a position counts) restricts token-level losses to real tokens; a policy that counts every
position (pads, [CLS], [SEP], sub-words) passes None.
"""
from __future__ import annotations

import tensorflow as tf

from xtremedistil_tf.train.losses import LabelLoss, Loss, masked_mean, masked_span_logits, mse

__all__ = ["AttentionLoss", "LabelLoss", "LogitsKL", "LogitsMSE", "Loss", "RepresentationLoss", "SpanLogitsKL",
           "attention_mse", "kl_divergence"]


def kl_divergence(student_logits, teacher_logits, temperature=1.0, mask=None):
    """KL(teacher || student) on temperature-softened distributions, scaled by T^2 (Hinton et al.)."""
    t = tf.cast(temperature, "float32")
    p = tf.nn.softmax(tf.cast(teacher_logits, "float32") / t, axis=-1)
    log_q = tf.nn.log_softmax(tf.cast(student_logits, "float32") / t, axis=-1)
    log_p = tf.math.log(tf.maximum(p, 1e-12))
    kl = tf.reduce_sum(p * (log_p - log_q), axis=-1) * t * t
    return kl if kl.shape.rank == 1 else masked_mean(kl, mask)


def attention_mse(student_attention, teacher_attention, mask=None):
    """MSE between attention maps [B, heads, T, T]; with a mask, only real query and key positions count."""
    err = tf.square(tf.cast(student_attention, "float32") - tf.cast(teacher_attention, "float32"))
    if mask is None:
        return tf.reduce_mean(tf.reshape(err, [tf.shape(err)[0], -1]), axis=-1)
    m = tf.cast(mask, "float32")
    pair = m[:, None, :, None] * m[:, None, None, :]
    heads = tf.cast(tf.shape(err)[1], "float32")
    return tf.reduce_sum(err * pair, axis=[1, 2, 3]) / tf.maximum(tf.reduce_sum(pair, axis=[1, 2, 3]) * heads, 1.0)


class RepresentationLoss(Loss):
    """MSE between the student's projected hidden states (top first) and the teacher's.

    Args:
      online: read the teacher's hidden states from its forward pass on the batch (every layer, or every token);
        otherwise the batch carries the cached first-token representation `t_rep_0`.
      token_level: compare every token (NER) instead of the first token.
    """

    def __init__(self, *, online: bool, token_level: bool):
        self.online = online
        self.token_level = token_level
        self.reads_cache = not online
        self.needs = frozenset({"representations"} | ({"teacher"} if online else set()))

    def __call__(self, outputs, teacher, batch, mask):
        reps = outputs["representations"]
        if self.online:
            hidden = teacher["hidden_states"]
            targets = [hidden[-1 - i] if self.token_level else hidden[-1 - i][:, 0] for i in range(len(reps))]
        else:
            targets = [batch["t_rep_0"]]
        total = 0.0
        for rep, target in zip(reps, targets):
            total += mse(rep, tf.stop_gradient(target), mask)
        return total


class AttentionLoss(Loss):
    """MSE between the student's attention maps and the teacher's top ones (needs equal head counts)."""

    needs = frozenset({"attentions", "teacher"})

    def __call__(self, outputs, teacher, batch, mask):
        s_att, t_att = outputs["attentions"], teacher["attentions"]
        total = 0.0
        for i in range(len(s_att)):
            total += attention_mse(s_att[-1 - i], tf.stop_gradient(t_att[-1 - i]), mask)
        return total


class LogitsMSE(Loss):
    """MSE between the student's logits and the teacher's cached logits `t_logits` (the original's loss)."""

    reads_cache = True

    def __call__(self, outputs, teacher, batch, mask):
        return mse(outputs["logits"], batch["t_logits"], mask)


class LogitsKL(Loss):
    """KL between temperature-softened teacher and student distributions, scaled by T^2."""

    reads_cache = True

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def __call__(self, outputs, teacher, batch, mask):
        return kl_divergence(outputs["logits"], batch["t_logits"], self.temperature, mask)

    def __repr__(self) -> str:
        return f"LogitsKL(T={self.temperature:g})"


class SpanLogitsKL(Loss):
    """Extractive QA: KL between the teacher's and the student's temperature-softened start distributions over the
    tokens, and the same for the end, averaged and scaled by T^2; padding gets no probability."""

    reads_cache = True

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def __call__(self, outputs, teacher, batch, mask):
        student = masked_span_logits(outputs["logits"], mask)
        target = masked_span_logits(batch["t_logits"], mask)
        start = kl_divergence(student[:, :, 0], target[:, :, 0], self.temperature)
        end = kl_divergence(student[:, :, 1], target[:, :, 1], self.temperature)
        return (start + end) / 2.0

    def __repr__(self) -> str:
        return f"SpanLogitsKL(T={self.temperature:g})"
