"""Shared inputs of the deployment tests: random token rows padded after a random length, as real batches are."""
import numpy as np


def padded_inputs(n: int, width: int, vocab: int, seed: int) -> dict[str, np.ndarray]:
    """`n` rows of `width` tokens (ids >= 5), each real for 3..width tokens and padded with id 0 after that."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, (n, width)).astype(np.int32)
    mask = np.ones((n, width), np.int32)
    for row, length in enumerate(rng.integers(3, width + 1, n)):
        mask[row, length:] = 0
        ids[row, length:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
