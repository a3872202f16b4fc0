"""The HTTP API: validation, routing, the error envelope. It talks only to the JobStore.

The application factory is ``aijobs.api.app.create_app``; this package stays import-light so the
SDK can share ``aijobs.api.schemas`` without loading FastAPI's application machinery.
"""
