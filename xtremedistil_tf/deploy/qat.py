"""Quantization-aware tuning for LiteRT full-integer int8: a short fine-tuning of a copy of the model while its layer
normalisation runs as LiteRT's full-integer conversion computes it, so the exported integer model keeps its float
accuracy.

Why layer normalisation: measured on the 6 x 384 MiniLM fine-tuned on SST-2 (benchmarks/README.md, section 8), int8
weights lose nothing, and LiteRT's full-integer file loses 5.3 points; rounding only the layer-norm tensors to 8
bits in TensorFlow reproduces 3.8 of them. The converter splits each LayerNorm into mean, squared difference,
mean, add epsilon, rsqrt, scale and shift, and gives every one of those tensors one 8-bit range over all tokens; the
residual stream's outlier dimensions make those ranges wide, and the per-token variances of ordinary tokens fall
into a few steps of them. Keras' `quantize("int8")` and the TF Model Optimization toolkit (tf_keras only) model
weights and layer outputs, not these tensors inside a layer, hence this simulation.
"""
from __future__ import annotations

import time

import numpy as np
from absl import logging

from xtremedistil_tf import fs
from xtremedistil_tf.deploy.int8 import export_int8, pad_to, padding_bias_set_to, split_scores
from xtremedistil_tf.models.encoder import INPUT_NAMES

QAT_BATCH = 32
RECALIBRATE_EVERY = 25
QAT_DIR = "int8-qat"
TARGET = ("litert", "int8-full")  # the export this tuning is for


class LayerNormSimulation:
    """Every `keras.layers.LayerNormalization` of `model` (over its last axis, as in these encoders) computed as
    LiteRT's full-integer model does: each
    intermediate tensor rounded to 8 bits (asymmetric, zero exactly representable) over the range it took on
    calibration rows, as the converter's representative dataset sets it. Rounding passes gradients straight through
    inside the range (`tf.quantization.fake_quant_with_min_max_args`).

    Use: `sim.calibrate(rows)`, then `with sim: ...` to run the model with the simulation on.
    """

    POINTS = ("in", "mean", "sqdiff", "var", "var_eps", "rsqrt", "inv_gamma", "neg_mean_inv", "res", "x_inv", "out")

    def __init__(self, model):
        import keras
        self.layers = [layer for layer in model._flatten_layers()
                       if isinstance(layer, keras.layers.LayerNormalization)]
        if not self.layers:
            raise ValueError("LayerNormSimulation: the model has no LayerNormalization layer")
        for layer in self.layers:
            if len(np.atleast_1d(layer.axis)) != 1 or layer.rms_scaling or not (layer.center and layer.scale):
                raise ValueError(f"LayerNormSimulation: {layer.path} is not a LayerNorm over one axis with a scale "
                                 "and a centre (as every LayerNorm of these encoders)")
        self.ranges: dict[tuple[str, str], tuple[float, float]] = {}
        self._limits: dict[tuple[str, str], tuple] = {}  # the ranges as variables: a compiled step sees updates
        self._mode = "off"

    def _point(self, layer, name: str, t):
        import tensorflow as tf
        key = (layer.path, name)
        if self._mode == "record":
            lo, hi = float(tf.reduce_min(t)), float(tf.reduce_max(t))
            a, b = self.ranges.get(key, (lo, hi))
            self.ranges[key] = (min(a, lo), max(b, hi))
            return t
        lo, hi = self._limits[key]
        return tf.quantization.fake_quant_with_min_max_vars(t, lo, hi, num_bits=8)

    def _call(self, layer):
        import tensorflow as tf

        def call(x):
            q = lambda name, t: self._point(layer, name, t)  # noqa: E731
            x = q("in", tf.cast(x, tf.float32))
            mean = q("mean", tf.reduce_mean(x, -1, keepdims=True))
            var = q("var", tf.reduce_mean(q("sqdiff", tf.math.squared_difference(x, tf.stop_gradient(mean))), -1,
                                          keepdims=True))
            inv = q("inv_gamma", q("rsqrt", tf.math.rsqrt(q("var_eps", var + layer.epsilon))) * layer.gamma)
            res = q("res", q("neg_mean_inv", -mean * inv) + layer.beta)
            return tf.cast(q("out", q("x_inv", x * inv) + res), layer.compute_dtype)

        return call

    def calibrate(self, model, rows: dict, batch: int = 8) -> None:
        """Records every simulated tensor's range over `rows` (inputs by name), run eagerly in batches; a
        compiled function that runs the simulation uses the new ranges from its next call."""
        import tensorflow as tf
        self.ranges.clear()
        with self._active("record"):
            for s in range(0, len(rows["input_ids"]), batch):
                model({k: tf.constant(rows[k][s:s + batch]) for k in INPUT_NAMES}, training=False)
        expected = len(self.layers) * len(self.POINTS)
        if len(self.ranges) != expected:
            raise RuntimeError(f"LayerNormSimulation: {len(self.ranges)} ranges recorded, expected {expected}")
        for key, (lo, hi) in self.ranges.items():  # zero in every range, as the converter's
            if key not in self._limits:
                self._limits[key] = (tf.Variable(0.0, trainable=False), tf.Variable(0.0, trainable=False))
            self._limits[key][0].assign(min(lo, 0.0))
            self._limits[key][1].assign(max(hi, 0.0))

    def _active(self, mode: str):
        sim = self

        class _Patch:
            def __enter__(self):
                sim._mode = mode
                for layer in sim.layers:
                    layer.call = sim._call(layer)

            def __exit__(self, *exc):
                for layer in sim.layers:
                    del layer.call
                sim._mode = "off"

        return _Patch()

    def __enter__(self):
        if not self.ranges:
            raise RuntimeError("LayerNormSimulation: calibrate() first")
        self._patch = self._active("quant")
        self._patch.__enter__()
        return self

    def __exit__(self, *exc):
        self._patch.__exit__(*exc)


def copy_model(model):
    """A new model of `model`'s config with its weights (the float model stays as it is)."""
    clone = model.__class__.from_config(model.get_config())
    sample = {k: np.zeros((1, 8), np.int32) for k in INPUT_NAMES}
    sample["attention_mask"][:] = 1
    clone(sample, training=False)
    clone.set_weights(model.get_weights())
    return clone


def quantization_aware_tune(model, *, rows: dict, calibration: dict, steps: int, learning_rate: float,
                            padding_bias: float, batch_size: int = QAT_BATCH, seed: int = 0,
                            recalibrate_every: int = RECALIBRATE_EVERY):
    """A copy of `model` fine-tuned for `steps` steps to give, under `LayerNormSimulation`, the float model's own
    logits on `rows` (mean squared error, no dropout). The float model's logits are the target: what the int8
    model should reproduce is the float student whose accuracy is the reference.

    Args:
      rows: inputs by name at the export's fixed length; cycled in a seeded order.
      calibration: inputs by name that set the simulated ranges (the rows the converter calibrates on).
      padding_bias: the bias of padded keys in the exports (`int8.export_padding_bias`), used throughout.
      recalibrate_every: steps between two calibrations of the simulated ranges, which follow the weights as the
        converter's calibration of the tuned model will.
    Returns (the tuned copy, {"steps", "loss_before", "loss_after", "seconds"}).
    """
    import tensorflow as tf

    from xtremedistil_tf import optimizers
    t0 = time.time()
    logits_of = tf.function(lambda m, b: tf.cast(m(b, training=False)["logits"], tf.float32), reduce_retracing=True)
    n = len(rows["input_ids"])
    with padding_bias_set_to(model, padding_bias):
        targets = np.concatenate([logits_of(model, {k: tf.constant(rows[k][s:s + 64]) for k in INPUT_NAMES}).numpy()
                                  for s in range(0, n, 64)])
    tuned = copy_model(model)
    optimizer = optimizers.Adam(learning_rate)
    variables = tuned.trainable_variables
    order = np.random.default_rng(seed).permutation(n)

    @tf.function(reduce_retracing=True)
    def step(batch, target):
        with tf.GradientTape() as tape:
            out = tf.cast(tuned(batch, training=False)["logits"], tf.float32)
            loss = tf.reduce_mean(tf.square(out - target))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    losses = []
    sim = LayerNormSimulation(tuned)
    with padding_bias_set_to(tuned, padding_bias):
        for i in range(steps):
            if i % recalibrate_every == 0:
                sim.calibrate(tuned, calibration)
            idx = np.sort(order[np.arange(i * batch_size, (i + 1) * batch_size) % n])
            with sim:
                losses.append(float(step({k: tf.constant(rows[k][idx]) for k in INPUT_NAMES},
                                         tf.constant(targets[idx]))))
            if i == 0 or (i + 1) % 50 == 0 or i + 1 == steps:
                logging.info("int8 QAT step %d/%d: loss %.5f", i + 1, steps, losses[-1])
    head = losses[:min(10, len(losses))]
    tail = losses[-min(10, len(losses)):]
    return tuned, {"steps": steps, "learning_rate": learning_rate, "batch_size": batch_size,
                   "loss_first_steps": float(np.mean(head)) if head else None,
                   "loss_last_steps": float(np.mean(tail)) if tail else None,
                   "seconds": round(time.time() - t0, 1)}


def recover_with_qat(model, folder: str, int8: dict, *, steps: int, learning_rate: float, max_drop: float,
                     tuning: dict, calibration: dict, splits: dict, score, seed: int, threads: int,
                     min_seconds: float, token_level: bool) -> dict:
    """Tunes a copy of `model` (`quantization_aware_tune` on the rows of `tuning`, e.g. `steps` x QAT_BATCH rows of
    the transfer or training set), writes its LiteRT full-integer file into `folder`/int8-qat, re-scores it on
    `splits` in LiteRT and compares it with the float LiteRT file of `int8` (the first export's results). Returns
    what goes into metrics.json's int8.qat.
    """
    length, metric = int8["length"], int8["metric"]
    runtime, variant = TARGET
    before = int8["runtimes"][runtime]["models"]
    rows = pad_to(tuning, length)
    logging.info("int8 QAT: %s %s lost %.2f point(s) on dev; tuning a copy of the model for %d steps on %d rows",
                 runtime, variant, -before[variant]["vs_float"]["points"]["dev"], steps, len(rows["input_ids"]))
    tuned, stats = quantization_aware_tune(model, rows=rows, calibration=pad_to(calibration, length), steps=steps,
                                           learning_rate=learning_rate, padding_bias=int8["padding_bias"],
                                           seed=seed)
    result = export_int8(tuned, fs.join(folder, QAT_DIR), length=length, num_labels=int8["num_labels"],
                         token_level=token_level, calibration=calibration, splits=splits, score=score,
                         metric=metric, threads=threads, runtimes=(runtime,), variants={runtime: (variant,)},
                         min_seconds=min_seconds, padding_bias=int8["padding_bias"])
    entry = result["runtimes"][runtime]["models"][variant]
    reference = split_scores(before["float"], metric)
    points = {s: round((v - reference[s]) * 100, 3) for s, v in split_scores(entry, metric).items()}
    recovered = points.get("dev", next(iter(points.values()))) >= -max_drop
    logging.info("int8 QAT: %s %s after tuning: %s against the float file (before: %s): %s", runtime, variant,
                 points, before[variant]["vs_float"]["points"], "recovered" if recovered else "not recovered")
    return {"runtime": runtime, "variant": variant, "folder": QAT_DIR, **stats, **entry,
            "points_vs_float": points, "points_before": before[variant]["vs_float"]["points"],
            "recovered": recovered}
