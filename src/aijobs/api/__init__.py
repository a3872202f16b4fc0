"""The HTTP API: validation, routing, the error envelope. It talks only to the JobStore."""

from aijobs.api.app import create_app

__all__ = ["create_app"]
