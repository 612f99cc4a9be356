"""Readers for every input format, one module each: the original release's task folders (:mod:`.task_folder`),
GLUE as distributed (:mod:`.glue`), CoNLL files (:mod:`.conll`) and TFDS (:mod:`.tfds`); :mod:`.common` holds
what they share.
SQuAD v1.1/v2.0 JSON files and TFDS ``squad/*`` (:mod:`.squad`) give a :class:`QAData` of :class:`QAExample` rows.

Every reader returns a :class:`TaskData` of :class:`Example` rows. Bad input raises
:class:`xtremedistil_tf.errors.DataError` whose message names the file, the line and what was expected. Nothing
is dropped silently: skipped lines (blank lines, ``-DOCSTART-`` lines, bad lines when ``skip_bad_lines=True``)
are counted and logged with absl.logging.

Files are read as bytes and split on ``\\n`` only (a ``\\r`` before it is removed), so characters such as U+2028
or U+0085 inside a text stay in the text; each line is decoded as strict UTF-8 and a UTF-8 byte order mark at
the start of a file is removed. Fields are split on tabs with no quoting (the original used
``csv.reader(delimiter="\\t", quotechar=None)``, GLUE/TFDS ``QUOTE_NONE``).

Label conventions
-----------------
* Task folders (original release format), classification: the original parses the label column with ``int()``
  and uses it as the class id as is; its number of classes is the number of distinct train labels and it never
  reads ``labels.tsv`` for classification. Here the label names are the lines of ``labels.tsv`` when the folder
  has one, else the distinct train labels sorted (numerically when all are integers), and the id is the position
  in that list. For the usual labels ``0..K-1`` both give the same ids; labels that are not integers, which the
  original rejects, work here. A dev/test label outside the train label set is an error.
* Task folders, NER: ``labels.tsv`` is required (as in the original); tag ids are positions in it. The original
  appended ``[PAD]``, ``X``, ``[SEP]``, ``[CLS]`` to that list; see ``tokenize.x_subword_labels``.
* GLUE (:func:`read_glue`) and TFDS (:func:`read_tfds`) use the TFDS label order, listed in
  :data:`GLUE_LABEL_NAMES`. STS-B is a float regression target (``label_names=None``). Test splits carry no labels
  (``label=None``) and keep the file's ``index`` column (``id`` for QQP) in ``Example.idx`` for submission files.
* CoNLL (:func:`read_conll`): the sorted tag set unless ``label_names`` is given (TFDS' conll2003 order is
  :data:`CONLL2003_TFDS_TAGS`).

Label sanity
------------
* A training file's classification labels must not mix numeric-looking labels (``0``, ``1``, ``2.5``) with
  non-numeric ones (``positive``): that is a DataError at the first line of the odd kind (the minority; on a tie,
  the kind first seen later), naming the label, the file's usual labels and the line they are first seen at.
  GLUE's files have a fixed kind per task (ids for SST-2, names for QNLI), so there a label of the other kind is
  the odd one, and its "not in the label set" error says so. Regression labels must be numbers anyway; NER tags
  are not checked for kinds or against a tagging scheme (IOB1 and IOB2 files both load).
* A dev/test label (tag) that the train split lacks is an error.
* A label (NER: tag, counted per word) seen fewer than 5 times in a training split is logged as a warning
  naming it, its count and the file.

The task tables (label names, GLUE folders and columns, TFDS names) live in :mod:`xtremedistil_tf.data.registry`;
the names re-exported from it here are the ones readers' users have always imported from this package.
"""
from xtremedistil_tf.data.readers.common import (
    Example, MissingFileError, TaskData, count_lines, iter_lines,
)
from xtremedistil_tf.data.readers.conll import read_conll
from xtremedistil_tf.data.readers.glue import read_glue
from xtremedistil_tf.data.readers.squad import QAData, QAExample, read_squad_json, read_tfds_squad
from xtremedistil_tf.data.readers.task_folder import (
    iter_transfer_file, read_labels_file, read_task_file, read_task_folder,
)
from xtremedistil_tf.data.readers.tfds import read_tfds
from xtremedistil_tf.data.registry import (
    CONLL2003_TFDS_TAGS, GLUE_LABEL_NAMES, GLUE_TASKS, KINDS, glue_task_name,
)
from xtremedistil_tf.errors import ConfigError, DataError

__all__ = [
    "CONLL2003_TFDS_TAGS", "ConfigError", "DataError", "Example", "GLUE_LABEL_NAMES", "GLUE_TASKS", "KINDS",
    "MissingFileError", "QAData", "QAExample", "TaskData", "count_lines", "glue_task_name", "iter_lines",
    "iter_transfer_file", "read_conll", "read_glue", "read_labels_file", "read_squad_json", "read_task_file",
    "read_task_folder", "read_tfds", "read_tfds_squad",
]
