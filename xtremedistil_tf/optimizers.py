"""Keras' Adam and AdamW with sparse gradients summed per row first and each update run as one fused kernel.

Three reasons, none covered by a library:
- Correctness. An embedding lookup's gradient is a `tf.IndexedSlices` with one slice per token, so a row appears
  once per occurrence in the batch. Keras 3.15's Adam squares the slices before summing them (`ops.square` keeps
  them apart), so a token seen k times gets sum(g_i^2) instead of (sum g_i)^2 as its second moment. Summing the
  slices first (`tf.convert_to_tensor`) gives Adam's update as PyTorch and the original's TensorFlow 2.3 Adam make it.
- Speed. Keras writes the update as about ten element-wise ops, each a pass over the variable's memory;
  TensorFlow's `ResourceApplyAdam` computes the same formula in one pass: 3.3x faster on a 30522 x 384 table on a
  CPU (benchmarks/README.md section 1g).
- Memory. Keras sums the gradients over replicas with `ReplicaContext.all_reduce`, which wraps dense gradients in
  `tf.custom_gradient`; traced in a `tf.function`, that registers a gradient function in TensorFlow's global
  registry for good, and with it the traced step's graph and every variable it captures (model and slots). Each
  model trained in a process then stays in memory (about 200 MB for a 17M-parameter student). With one replica
  the sum over replicas is the gradient itself, so it is skipped; with several, the same reduction runs without
  the wrapper.
"""
from __future__ import annotations

import keras
import tensorflow as tf


class _FusedAdamUpdate:
    """Replaces `update_step` of an Adam subclass (AdamW's weight decay is applied before it, by Keras), and skips
    the all-reduce of one replica's gradients (see above)."""

    def _all_reduce_sum_gradients(self, grads_and_vars):
        pairs = list(grads_and_vars)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return pairs
        if not context.strategy.extended._use_merge_call():  # noqa: SLF001 - as ReplicaContext.all_reduce decides
            return super()._all_reduce_sum_gradients(pairs)
        # all_reduce's own reduction, without its tf.custom_gradient wrapper (gradients are not differentiated).
        grads = [g for g, _ in pairs if g is not None]

        def batch_sum(strategy, *values):
            return strategy.extended.batch_reduce_to(tf.distribute.ReduceOp.SUM, [(v, v) for v in values])

        reduced = iter(context.merge_call(batch_sum, args=grads) if grads else [])
        return [(None if g is None else next(reduced), v) for g, v in pairs]

    def update_step(self, gradient, variable, learning_rate):
        gradient = tf.convert_to_tensor(gradient)  # an IndexedSlices' slices summed per row (see above)
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        var = variable.value if isinstance(variable, keras.Variable) else variable
        tf.raw_ops.ResourceApplyAdam(
            var=var.handle, m=self._momentums[index].value.handle, v=self._velocities[index].value.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))


class Adam(_FusedAdamUpdate, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with the fused update."""


class AdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with the fused update."""
