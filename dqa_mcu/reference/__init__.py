"""Executors: the NumPy integer references (DQA, docs/spec.md; TFLite int8, docs/spec_tflite.md), the
float baselines (PyTorch) and evaluation on datasets."""
