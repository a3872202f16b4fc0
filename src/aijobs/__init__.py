"""aijobs: an HTTP job queue for machine-learning work."""

__version__ = "1.0.0"
