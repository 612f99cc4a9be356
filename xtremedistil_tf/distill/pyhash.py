"""The original release's unfreezing order, derived from its seed as its Python (3.6/3.7) derived it.

The original orders its shared-layer groups with `list(set(names))`, "student" added before "dense": the order of a
two-element set of strings, i.e. of their hashes under PYTHONHASHSEED. Python 3.6-3.10 hash strings with
SipHash-2-4 keyed from the seed (3.11+ switched to SipHash-1-3, so the running interpreter cannot answer this);
the hash and the set's slot probing are written out here because no library reproduces CPython 3.7's internals.
"""
from __future__ import annotations

MASK64 = (1 << 64) - 1
SET_SLOTS = 8  # a new set's table (PySet_MINSIZE)
PERTURB_SHIFT = 5
ORIGINAL_GROUPS = ("student", "dense")  # the order the original adds them to its set


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & MASK64


def _sipround(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & MASK64
    v2 = (v2 + v3) & MASK64
    v1 = _rotl(v1, 13) ^ v0
    v3 = _rotl(v3, 16) ^ v2
    v0 = _rotl(v0, 32)
    v2 = (v2 + v1) & MASK64
    v0 = (v0 + v3) & MASK64
    v1 = _rotl(v1, 17) ^ v2
    v3 = _rotl(v3, 21) ^ v0
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash24(k0: int, k1: int, data: bytes) -> int:
    """SipHash-2-4 of `data` under the key (k0, k1), as an unsigned 64-bit integer."""
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573
    tail_start = len(data) - len(data) % 8
    for i in range(0, tail_start, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = _sipround(*_sipround(v0, v1, v2, v3))
        v0 ^= m
    b = ((len(data) & 0xFF) << 56) | int.from_bytes(data[tail_start:], "little")
    v3 ^= b
    v0, v1, v2, v3 = _sipround(*_sipround(v0, v1, v2, v3))
    v0 ^= b
    v2 ^= 0xFF
    for _ in range(4):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def hash_key(seed: int) -> tuple[int, int]:
    """CPython's SipHash key for PYTHONHASHSEED=`seed`: zero for 0 (randomization off), else the first 16 bytes of
    its linear congruential generator (`lcg_urandom` in Python/bootstrap_hash.c)."""
    if seed == 0:
        return 0, 0
    x, out = seed & 0xFFFFFFFF, bytearray()
    for _ in range(16):
        x = (x * 214013 + 2531011) & 0xFFFFFFFF
        out.append((x >> 16) & 0xFF)
    return int.from_bytes(out[:8], "little"), int.from_bytes(out[8:], "little")


def py37_str_hash(text: str, seed: int) -> int:
    """`hash(text)` in Python 3.6-3.10 under PYTHONHASHSEED=`seed`, for an ASCII/Latin-1 string."""
    if not text:
        return 0  # _Py_HashBytes: the empty string hashes to 0 under any key
    value = siphash24(*hash_key(seed), text.encode("latin-1"))
    value = value - (1 << 64) if value >= 1 << 63 else value
    return -2 if value == -1 else value


def py37_set_order(items, seed: int) -> list[str]:
    """`list(set)` of `items` added in this order to a new set (at most 5 items: one 8-slot table) in Python
    3.6-3.10 under PYTHONHASHSEED=`seed` (set_add_entry's probing: no linear probes in so small a table)."""
    items = list(dict.fromkeys(items))
    if len(items) * 5 >= SET_SLOTS * 3:
        raise ValueError("only sets small enough to keep CPython's first 8-slot table")
    mask, table = SET_SLOTS - 1, [None] * SET_SLOTS
    for item in items:
        h = py37_str_hash(item, seed) & ((1 << 64) - 1)
        i, perturb = h & mask, h
        while table[i] is not None:
            perturb >>= PERTURB_SHIFT
            i = (i * 5 + 1 + perturb) & mask
        table[i] = item
    return [x for x in table if x is not None]


def original_unfreeze_order(seed: int) -> str:
    """The original's group order for `--seed` (its PYTHONHASHSEED), as `--unfreeze_order` spells it."""
    return ",".join(py37_set_order(ORIGINAL_GROUPS, seed))
