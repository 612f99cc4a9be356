"""Per-epoch random streams: every epoch's dropout and batch order follow from (seed, stream, chunk, epoch) alone,
so a resumed run equals an uninterrupted one."""
from __future__ import annotations

import keras
import numpy as np


def unit_seed(seed: int, *parts: int) -> int:
    """A seed for one unit of work (e.g. stage, chunk, epoch), independent of what ran before it."""
    value = seed
    for p in parts:
        value = (value * 1_000_003 + p + 1) % (2**31 - 1)
    return value


def reseed_dropout(model: keras.Model, seed: int) -> None:
    """Sets every dropout seed generator of `model` from `seed`."""
    for i, layer in enumerate(model._flatten_layers(include_self=False, recursive=True)):
        gen = getattr(layer, "seed_generator", None)
        if gen is not None:
            gen.state.assign(np.array([seed * 1000 + i, 0], dtype=gen.state.dtype.name
                                      if hasattr(gen.state.dtype, "name") else "int64"))
