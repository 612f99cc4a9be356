"""TensorFlow Datasets: GLUE (``glue/<task>``), ``conll2003`` and other text classification datasets.

tensorflow_datasets is imported only when a dataset is read. Split names and text features of the known tasks
come from :mod:`xtremedistil_tf.data.registry`.
"""
from __future__ import annotations

from typing import Sequence

from xtremedistil_tf.data import registry
from xtremedistil_tf.data.readers.common import Example, TaskData, log_label_counts, warn_rare_labels
from xtremedistil_tf.errors import DataError


def _decode(value, where: str, i: int) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(where, i + 1, "invalid UTF-8 in a text feature") from None
    return str(value)


def read_tfds(name: str, split: str, *, data_dir: str | None = None, download: bool = True,
              label_names: Sequence[str] | None = None) -> TaskData:
    """Reads a TFDS dataset split into a TaskData: "glue/<task>" (split names "train", "dev"/"validation",
    "test", MNLI "dev_matched"/"validation_matched", ...), "conll2003" (NER: tokens and ner tags; "dev" or
    "validation"), or another
    dataset with a ClassLabel ``label`` and a ``sentence``/``text`` feature (or a known pair of text features).

    Label names come from the dataset's ClassLabel (the TFDS order, same as :data:`GLUE_LABEL_NAMES`); a float
    label is regression. Test labels of -1 become None. ``Example.idx`` is the ``idx`` feature when present.
    STS-B's test scores of -1 also become None. In errors the "line" is the 1-based example number;
    ``TaskData.path`` is ``"tfds:<name>/<split>"``. Labels are ClassLabel ids, so they cannot mix numbers and
    names; a train label (tag) seen fewer than 5 times is logged as a warning.
    """
    import numpy as np
    import tensorflow_datasets as tfds

    tfds_split = registry.tfds_split(name, split)
    where = f"tfds:{name}/{tfds_split}"
    try:
        ds, info = tfds.load(name, split=tfds_split, data_dir=data_dir, download=download, with_info=True)
    except Exception as e:  # noqa: BLE001 - TFDS raises many types; the message is what matters
        raise DataError(where, None, f"could not load the TFDS dataset: {type(e).__name__}: {e}") from e
    features = info.features
    keys = set(features.keys())
    examples: list[Example] = []
    if "tokens" in keys and "ner" in keys:
        names = list(label_names) if label_names is not None else list(features["ner"].feature.names)
        for i, ex in enumerate(tfds.as_numpy(ds)):
            ws = tuple(_decode(w, where, i) for w in ex["tokens"])
            tags = [int(t) for t in ex["ner"]]
            if len(ws) != len(tags):
                raise DataError(where, i + 1, f"NER example has {len(ws)} token(s) but {len(tags)} tag(s)")
            if any(t < 0 or t >= len(names) for t in tags):
                raise DataError(where, i + 1, f"tag id outside the label set of {len(names)} tags")
            examples.append(Example(ws, None, tuple(tags), int(ex.get("idx", i))))
        kind, pairwise = "ner", False
    else:
        config = name.split("/", 1)[1].split(":")[0] if "/" in name else ""
        a_key, b_key = registry.tfds_text_keys(config)
        if a_key is None or a_key not in keys:
            for a, b in registry.TFDS_FALLBACK_TEXT_KEYS:
                if a in keys and (b is None or b in keys):
                    a_key, b_key = a, b
                    break
            else:
                raise DataError(where, None, f"no text feature found among {sorted(keys)}")
        label_feature = features["label"] if "label" in keys else None
        if label_feature is not None and hasattr(label_feature, "names"):
            kind = "classification"
            names = list(label_names) if label_names is not None else list(label_feature.names)
        elif label_feature is not None:
            kind, names = "regression", None
        else:
            kind = "classification"
            names = list(label_names) if label_names is not None else None
        pairwise = b_key is not None
        for i, ex in enumerate(tfds.as_numpy(ds)):
            label = None
            if label_feature is not None:
                raw = ex["label"]
                if kind == "regression":
                    label = float(raw)
                    if np.isnan(label) or label == -1.0:
                        label = None
                elif int(raw) >= 0:
                    label = int(raw)
                    if names is not None and label >= len(names):
                        raise DataError(where, i + 1, f"label id {label} outside the {len(names)} labels")
            examples.append(Example(_decode(ex[a_key], where, i),
                                    _decode(ex[b_key], where, i) if b_key else None,
                                    label, int(ex["idx"]) if "idx" in ex else i))
    if not examples:
        raise DataError(where, None, "empty split: no examples")
    log_label_counts(where, kind, names, examples)
    if tfds_split.startswith("train"):
        warn_rare_labels(where, kind, names, examples)
    return TaskData(examples, names, kind, where, pairwise)
