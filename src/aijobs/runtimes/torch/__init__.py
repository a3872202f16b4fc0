"""The PyTorch runtime (``runtime``): text classifiers, language models and image classifiers
sharing one training loop (``training``)."""
