"""The model room: layers, the encoder, task heads and model saving. It imports nothing of ours above it
(only `errors` and `io`); checkpoint formats and weight names live in `xtremedistil_tf.convert`."""
