"""Deployment: the student exported to the runtimes users ship it in (ONNX Runtime, LiteRT/TFLite), float and int8,
each re-scored on the task's own splits in its own runtime, and the run's cost report.

Layer: above models, data and metrics (it exports and scores a model), beside convert; the apps and the distiller's
outputs call it, it imports neither.
"""
