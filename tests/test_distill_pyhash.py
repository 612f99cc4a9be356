"""The original's unfreezing order from its seed (distill/pyhash.py): SipHash-2-4 against the reference vectors,
string hashes and set orders against Python 3.7 (recorded from the interpreter, and checked live when a python3.7 is
on this machine), and the config's derived default."""
import ast
import os
import shutil
import subprocess

import pytest

from xtremedistil_tf.distill.config import DistilConfig
from xtremedistil_tf.distill.pyhash import original_unfreeze_order, py37_set_order, py37_str_hash, siphash24

KEY = (int.from_bytes(bytes(range(8)), "little"), int.from_bytes(bytes(range(8, 16)), "little"))
# SipHash-2-4 reference outputs (Aumasson and Bernstein), key 00..0f, message 00..(n-1)
VECTORS = {0: 0x726FDB47DD0E0E31, 1: 0x74F839C593DC67FD, 2: 0x0D6C8009D9A94F5A, 8: 0x93F5F5799A932462,
           15: 0xA129CA6149BE45E5}
# hash("dense"), hash("student") and list({"student", "dense"}) in Python 3.7.16 with PYTHONHASHSEED=seed
PY37 = {0: (-8196954139642792469, -3362115069979734454, "student,dense"),
        1: (-5594316435571715032, 9210834204695375105, "dense,student"),
        2: (-7620821807971300278, 8176632312867687253, "dense,student"),
        3: (815395643401444425, 7915762299348212974, "dense,student"),
        4: (-3206657082808203146, -2336254741222261809, "dense,student"),
        5: (-6073510379856927012, -4144386525101002943, "student,dense"),
        42: (4738255616257184021, -2454802489752879225, "dense,student")}


@pytest.mark.parametrize("length", sorted(VECTORS))
def test_siphash24_reference_vectors(length):
    assert siphash24(*KEY, bytes(range(length))) == VECTORS[length]


@pytest.mark.parametrize("seed", sorted(PY37))
def test_hashes_and_set_order_are_python_37s(seed):
    dense, student, order = PY37[seed]
    assert (py37_str_hash("dense", seed), py37_str_hash("student", seed)) == (dense, student)
    assert original_unfreeze_order(seed) == order
    assert ",".join(py37_set_order(["student", "dense"], seed)) == order


def test_the_config_derives_the_order_from_the_seed_unless_given():
    base = dict(task="t", model_dir="m", mode="faithful")
    assert DistilConfig(**base, seed=5).resolved_unfreeze_order == "student,dense"
    assert DistilConfig(**base, seed=42).resolved_unfreeze_order == "dense,student"
    assert DistilConfig(**base, seed=5, unfreeze_order="dense,student").resolved_unfreeze_order == "dense,student"
    # the saved configuration records the order the run used, so reruns and old run folders compare by it
    assert DistilConfig(**base, seed=0).to_json()["unfreeze_order"] == "student,dense"
    assert DistilConfig(**base, seed=42).to_json() == DistilConfig(**base, seed=42,
                                                                   unfreeze_order="dense,student").to_json()


def _python37():
    """A working Python 3.7 interpreter on this machine, or None (a pyenv shim without the version fails)."""
    for candidate in ("/root/.pyenv/versions/3.7.16/bin/python3.7", shutil.which("python3.7")):
        check = [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 7)"] if candidate else None
        if check and os.path.exists(candidate) and subprocess.run(check, capture_output=True).returncode == 0:
            return candidate
    return None


PYTHON37 = _python37()


@pytest.mark.skipif(PYTHON37 is None, reason="no python3.7 on this machine")
def test_against_a_live_python37():
    words = ["student", "dense", "embeddings", "a", "", "transformer_layer_0", "xtremedistil", "12345678"]
    script = f"import sys; print(repr([hash(w) for w in {words!r}])); s = set()\nfor w in {words[:3]!r}: s.add(w)\n" \
             "print(','.join(s))"
    for seed in (0, 7, 123, 4294967295):
        out = subprocess.run([PYTHON37, "-c", script], env={**os.environ, "PYTHONHASHSEED": str(seed)},
                             capture_output=True, text=True, check=True).stdout.splitlines()
        assert ast.literal_eval(out[0]) == [py37_str_hash(w, seed) for w in words]
        assert out[1] == ",".join(py37_set_order(words[:3], seed))
