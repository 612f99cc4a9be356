"""Self-attention relation losses (MiniLM, arXiv 2002.10957; MiniLMv2, 2012.15828): KL(teacher || student) between
per-head [T, T] distributions (attention probabilities, or softmax(X Xᵀ / √d) of a layer's queries, keys or values),
which do not depend on the width, so a narrow student can learn from a wide teacher. Averaged over heads and real
query tokens, with padded keys given no probability, so a batch's padding never changes an example's loss.
"""
from __future__ import annotations

import math

import tensorflow as tf

from xtremedistil_tf.models.layers import padding_bias
from xtremedistil_tf.train.losses import Loss

__all__ = ["MiniLMLoss", "MiniLMv2Loss", "attention_kl", "relation_kl", "relation_log_probs"]

def _mean_over_heads_and_queries(kl, mask):
    """Mean of a [B, heads, T] per-query-row tensor over heads and real query rows: [B]."""
    m = tf.cast(mask, "float32")[:, None, :]
    heads = tf.cast(tf.shape(kl)[1], "float32")
    return tf.reduce_sum(kl * m, axis=[1, 2]) / tf.maximum(tf.reduce_sum(m, axis=[1, 2]) * heads, 1.0)


def relation_log_probs(x, num_heads: int, mask):
    """Self-relation of x [B, T, H] over `num_heads` relation heads: log softmax(x_r x_rᵀ / √(H/num_heads)) over the
    keys, [B, num_heads, T, T] float32, with padded keys (`mask` [B, T] 0) excluded."""
    width = x.shape[-1]
    if width is not None and width % num_heads:
        raise ValueError(f"the width H={width} is not divisible by {num_heads} relation heads")
    x = tf.cast(x, "float32")
    b, t = tf.shape(x)[0], tf.shape(x)[1]
    size = width // num_heads if width is not None else tf.shape(x)[-1] // num_heads
    heads = tf.transpose(tf.reshape(x, [b, t, num_heads, size]), [0, 2, 1, 3])
    scale = 1.0 / math.sqrt(size) if width is not None else tf.math.rsqrt(tf.cast(size, "float32"))
    scores = tf.matmul(heads, heads, transpose_b=True) * scale + padding_bias(mask)
    return tf.nn.log_softmax(scores, axis=-1)


def relation_kl(student_x, teacher_x, num_heads: int, mask):
    """KL(teacher relation || student relation) of [B, T, H_t] and [B, T, H_s] inputs, each split into `num_heads`
    relation heads, per query row, averaged over heads and real query rows: [B]. The teacher gets no gradient."""
    log_p = tf.stop_gradient(relation_log_probs(teacher_x, num_heads, mask))
    log_q = relation_log_probs(student_x, num_heads, mask)
    # Padded keys have p = exp(-1e9 - ...) = 0 exactly and finite log-probabilities, so they add exactly 0.
    kl = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
    return _mean_over_heads_and_queries(kl, mask)


def attention_kl(student_probs, teacher_probs, mask):
    """KL(teacher || student) between attention probabilities [B, heads, T, T] (equal head counts), per query row,
    averaged over heads and real query rows: [B]. Zero teacher probabilities and padded keys contribute 0."""
    hs, ht = student_probs.shape[1], teacher_probs.shape[1]
    if hs is not None and ht is not None and hs != ht:
        raise ValueError(f"attention KL needs equal head counts: student {hs}, teacher {ht}")
    p = tf.stop_gradient(tf.cast(teacher_probs, "float32"))
    q = tf.cast(student_probs, "float32")
    valid = (p > 0) & (tf.cast(mask, "float32")[:, None, None, :] > 0)
    terms = p * (tf.math.log(tf.maximum(p, 1e-12)) - tf.math.log(tf.maximum(q, 1e-12)))
    kl = tf.reduce_sum(tf.where(valid, terms, 0.0), axis=-1)
    return _mean_over_heads_and_queries(kl, mask)


class MiniLMLoss(Loss):
    """MiniLM: attention-distribution KL plus value-relation KL (over the attention heads) between the student's last
    layer and the teacher's layer `teacher_layer` (a list index, negative allowed). Needs equal head counts."""

    needs = frozenset({"attentions", "qkv", "teacher"})

    def __init__(self, teacher_layer: int = -1):
        self.teacher_layer = teacher_layer

    def __call__(self, outputs, teacher, batch, mask):
        mask = batch["attention_mask"]  # relations count real tokens only, whatever the stage's mask policy
        s_att, t_att = outputs["attentions"][-1], teacher["attentions"][self.teacher_layer]
        hs, ht = s_att.shape[1], t_att.shape[1]
        if hs is not None and ht is not None and hs != ht:
            raise ValueError(f"MiniLM needs equal head counts: student {hs}, teacher {ht}")
        heads = hs if hs is not None else ht
        if heads is None:
            raise ValueError("MiniLM needs a static attention head count")
        value = relation_kl(outputs["qkv"][-1][2], teacher["qkv"][self.teacher_layer][2], heads, mask)
        return attention_kl(s_att, t_att, mask) + value

    def __repr__(self) -> str:
        return f"MiniLM(teacher layer {self.teacher_layer})"


class MiniLMv2Loss(Loss):
    """MiniLMv2: query-query, key-key and value-value relation KLs over `relation_heads` relation heads between the
    student's last layer and the teacher's layer `teacher_layer` (a list index); widths and head counts may differ."""

    needs = frozenset({"qkv", "teacher"})

    def __init__(self, relation_heads: int, teacher_layer: int = -1):
        self.relation_heads = relation_heads
        self.teacher_layer = teacher_layer

    def __call__(self, outputs, teacher, batch, mask):
        mask = batch["attention_mask"]  # relations count real tokens only, whatever the stage's mask policy
        s_qkv, t_qkv = outputs["qkv"][-1], teacher["qkv"][self.teacher_layer]
        total = 0.0
        for s, t in zip(s_qkv, t_qkv):
            total += relation_kl(s, t, self.relation_heads, mask)
        return total

    def __repr__(self) -> str:
        return f"MiniLMv2(q,k,v; {self.relation_heads} relation heads, teacher layer {self.teacher_layer})"
