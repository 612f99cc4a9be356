"""Precision choice: --opt_policy auto picks float32 on CPUs, whatever their bfloat16 units (measured: bfloat16 costs
accuracy on the reference run), and explicit policies are kept."""
import keras
import pytest

from xtremedistil_tf.errors import ConfigError
from xtremedistil_tf.strategy import auto_precision, cpu_flags, resolve_precision, set_up_runtime


@pytest.fixture
def restore_policy():
    previous = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(previous)


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(str(info)) == {"fpu", "sse2", "avx512f", "avx512_bf16", "amx_tile"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize("flags,named", [
    ({"avx512f", "amx_bf16", "amx_tile"}, "amx_bf16"),
    ({"avx512f", "avx512_bf16"}, "avx512_bf16"),
    ({"avx512f", "avx2", "fma"}, "without bfloat16 units"),
])
def test_auto_is_float32_on_any_cpu_and_says_what_it_found(flags, named):
    chosen, why = auto_precision(flags=frozenset(flags))
    assert chosen == "float32" and named in why
    assert resolve_precision("auto", flags=frozenset(flags)) == "float32"


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_explicit_policies_are_kept_whatever_the_hardware(policy):
    assert resolve_precision(policy, flags=frozenset()) == policy
    assert resolve_precision(policy, flags=frozenset({"amx_bf16"})) == policy


def test_unknown_policy_names_the_flag_and_the_choices():
    with pytest.raises(ConfigError, match=r"--opt_policy='bf16'.*float32, .*auto"):
        resolve_precision("bf16")


def test_set_up_runtime_applies_the_resolved_policy(restore_policy):
    keras.config.set_dtype_policy("mixed_float16")
    set_up_runtime(seed=1, deterministic=False, opt_policy="auto", strategy="default", tpu=None, fixed_shapes=False)
    assert keras.config.dtype_policy().name == auto_precision()[0]
