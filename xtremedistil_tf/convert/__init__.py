"""Checkpoint conversion: Hugging Face and Google checkpoints in, Hugging Face / SavedModel / Keras folders out.

Sits above `xtremedistil_tf.models` and owns every external weight name (`names.py`)."""
