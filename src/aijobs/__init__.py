"""aijobs: an HTTP job queue for machine-learning work."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aijobs")  # one source: the version in pyproject.toml
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
