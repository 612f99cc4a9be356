"""The mode policies, as a table: what each mode decides."""
import pytest

from xtremedistil_tf.distill.config import DistilConfig
from xtremedistil_tf.distill.policy import MODES, DefaultPolicy, FaithfulPolicy, policy_for
from xtremedistil_tf.train.phase import StoppingRule

TABLE = {
    # attribute or call:                 (default,        faithful)
    "shuffle_rows":                      (False,          True),
    "pad_to('classification')":          ("seq_len",      "longest"),
    "pad_to('ner')":                     ("seq_len",      "seq_len"),
    "group_batches":                     (True,           False),
    "drop_partial_batch":                (True,           False),
    "mask_padding":                      (True,           False),
    "ner_x_labels":                      (False,          True),
    "teacher_first_token_head":          (False,          True),
    "student_projected_head":            (False,          True),
    "stopping_rule":                     (StoppingRule(True, True), StoppingRule(False, False)),
    "logits_validated_on_dev":           (True,           False),
    "carry_best_across_logit_stages":    (False,          True),
    "selection_split_of({'dev': 1, 'test': 1})": ("dev",  "test"),
    "selection_split_of({'dev': 1})":    ("dev",          "dev"),
    "selection_better(0.5, 0.5)":        (False,          True),
    "selection_better(0.6, 0.5)":        (True,           True),
    "selection_better(0.4, None)":       (True,           True),
    "intermediate_size(128)":            (512,            3072),
    "student_learning_rate(False)":      (1e-3,           3e-5),
    "student_learning_rate(True)":       (5e-5,           3e-5),
    "teacher_learning_rate('classification')": (3e-5,     3e-5),
    "teacher_learning_rate('ner')":      (1e-4,           3e-5),
    "teacher_warmup('ner')":             (0.1,            None),
    "teacher_warmup('classification')":  (None,           None),
    "mean_over_real_batch":              (False,          True),
    "compresses_scratch_student":        (True,           False),
    "compresses_fine_tuned_teacher":     (False,          True),
    "unfreeze_groups(num_layers=2, has_projection=True, unfreeze_order='dense,student')":
        (["transformer_layer_1", "transformer_layer_0", "embeddings"], ["dense", "student"]),
    "unfreeze_groups(num_layers=2, has_projection=False, unfreeze_order='student,dense')":
        (["transformer_layer_1", "transformer_layer_0", "embeddings"], ["student"]),
}


@pytest.mark.parametrize("n, default, faithful", [(10, 9, 9), (15, 14, 13), (19, 18, 17), (7, 6, 6),
                                                  (8000, 7200, 7200), (8005, 7205, 7204), (1, 1, 1)])
def test_validation_cut(n, default, faithful):
    """A transfer chunk's rows trained on (the rest validates): the default keeps the tail at floor(n / 10), at
    least one row; faithful keeps Keras 2.3's validation_split: floor(0.9 n) rows trained on."""
    assert (DefaultPolicy().validation_cut(n), FaithfulPolicy().validation_cut(n)) == (default, faithful)


@pytest.mark.parametrize("expr", sorted(TABLE))
def test_policy_table(expr):
    for policy, expected in zip((DefaultPolicy(), FaithfulPolicy()), TABLE[expr]):
        assert eval(f"policy.{expr}") == expected, (policy.name, expr)  # noqa: S307 - the table's own expressions


def test_modes_and_config_derived_values():
    assert MODES == ("default", "faithful")
    assert isinstance(policy_for("faithful"), FaithfulPolicy)
    cfg = DistilConfig(mode="faithful", hidden_size=128)
    assert cfg.policy.name == "faithful" and cfg.student_intermediate_size == 3072 and cfg.student_lr == 3e-5
    assert not cfg.grouped_batches
    cfg = DistilConfig(hidden_size=128, pt_student_checkpoint="x")
    assert cfg.student_intermediate_size == 512 and cfg.student_lr == 5e-5 and cfg.grouped_batches
    assert DistilConfig(intermediate_size=100, student_learning_rate=0.1).student_lr == 0.1
