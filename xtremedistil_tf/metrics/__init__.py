"""Evaluation metrics for GLUE, NER and SQuAD.

* :mod:`.glue`: accuracy, F1, Matthews correlation (sklearn), Pearson and Spearman (scipy.stats), GLUE's
  metrics per task and GLUE submission files.
* :mod:`.ner`: entity precision/recall/F1 exactly as the CoNLL `conlleval` script computes them.
* :mod:`.squad`: SQuAD exact match and F1 exactly as the official v1.1 and v2.0 evaluation scripts compute them.
* :mod:`.scoring`: a model's logits on a split scored with its task's metrics; the metric that picks checkpoints.

Importing this package loads neither sklearn, scipy nor TensorFlow: the library scorers are imported on first use.
"""
from xtremedistil_tf.metrics.glue import (
    GLUE_TASKS, accuracy, f1, glue_metrics, matthews_corrcoef, pearson, spearman, write_glue_predictions,
)
from xtremedistil_tf.metrics.ner import flat_ner_metrics, get_entities, ner_metrics, remove_x
from xtremedistil_tf.metrics.scoring import main_metric, score_logits, score_ner_like_original
from xtremedistil_tf.metrics.squad import squad_v1_metrics, squad_v2_metrics

__all__ = [
    "accuracy",
    "f1",
    "matthews_corrcoef",
    "pearson",
    "spearman",
    "glue_metrics",
    "main_metric",
    "get_entities",
    "ner_metrics",
    "flat_ner_metrics",
    "remove_x",
    "score_ner_like_original",
    "score_logits",
    "squad_v1_metrics",
    "squad_v2_metrics",
    "write_glue_predictions",
    "GLUE_TASKS",
]
