"""Learning-rate schedules: BERT's linear warm-up followed by a Keras decay schedule."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="xtremedistil_tf")
class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps` (step s gives peak * (s + 1) / warmup_steps), then
    `after` evaluated at s - warmup_steps. Keras has no warm-up wrapper for its decays, hence this one."""

    def __init__(self, peak: float, warmup_steps: int, after: keras.optimizers.schedules.LearningRateSchedule):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.after = after

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = self.peak * (step + 1.0) / float(max(self.warmup_steps, 1))
        return ops.where(step < float(self.warmup_steps), warm, self.after(step - float(self.warmup_steps)))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "after": keras.saving.serialize_keras_object(self.after)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["after"] = keras.saving.deserialize_keras_object(config["after"])
        return cls(**config)


def warmup_linear_decay(peak: float, warmup_steps: int, total_steps: int) -> WarmUp:
    """BERT's schedule: linear warm-up to `peak`, then linear decay (Keras' PolynomialDecay, power 1) to 0 at
    `total_steps`."""
    # With no step left after the warm-up, the rate is 0 from there on.
    start = peak if total_steps > warmup_steps else 0.0
    decay = keras.optimizers.schedules.PolynomialDecay(start, max(total_steps - warmup_steps, 1), end_learning_rate=0.0,
                                                      power=1.0)
    return WarmUp(peak, warmup_steps, decay)
