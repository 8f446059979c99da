"""Front ends: model files (PyTorch, Keras, TFLite) and the built-in architectures -> the float graph IR,
and the graph passes that normalize it."""
