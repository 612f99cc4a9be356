"""Data: readers for every input format, tokenization to int32 features, tf.data pipelines, the transfer cache.

TensorFlow is imported only by the pipeline functions that need it.
"""
from xtremedistil_tf.data.pipeline import TransferCache, global_batch_size, make_dataset
from xtremedistil_tf.data.readers import (
    CONLL2003_TFDS_TAGS, GLUE_LABEL_NAMES, GLUE_TASKS, Example, MissingFileError, TaskData, count_lines,
    iter_transfer_file, read_conll, read_glue, read_labels_file, read_task_file, read_task_folder, read_tfds,
)
from xtremedistil_tf.data.tokenize import Featurizer, faithful_ner_labels, load_tokenizer, tokenizer_fingerprint

__all__ = [
    "CONLL2003_TFDS_TAGS", "GLUE_LABEL_NAMES", "GLUE_TASKS", "Example", "Featurizer", "MissingFileError", "TaskData",
    "TransferCache", "count_lines", "faithful_ner_labels", "global_batch_size", "iter_transfer_file",
    "load_tokenizer", "make_dataset", "read_conll", "read_glue", "read_labels_file", "read_task_file",
    "read_task_folder", "read_tfds", "tokenizer_fingerprint",
]
