"""XtremeDistil in TensorFlow/Keras 3: distil a fine-tuned transformer into a small BERT student."""

__version__ = "0.1.0"
