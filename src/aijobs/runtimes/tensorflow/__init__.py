"""The TensorFlow runtime (``runtime``): Keras image classifiers."""
