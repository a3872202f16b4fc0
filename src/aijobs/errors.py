"""One root exception; each subclass carries its HTTP status and its default message."""

from __future__ import annotations


class AIJobsError(Exception):
    """Internal error"""

    status_code = 500
    title = "Internal server error"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or (self.__doc__ or self.title).strip()
        super().__init__(self.detail)


class BadRequest(AIJobsError):
    """Invalid request"""

    status_code = 400
    title = "Bad request"


class UnknownFramework(BadRequest):
    """Unknown framework_override"""


class IncompatibleFramework(BadRequest):
    """This framework cannot run that model type"""


class InvalidDataPath(BadRequest):
    """data_path is not inside a configured data root"""


class NotCancellable(BadRequest):
    """Job cannot be cancelled"""

    title = "Job cannot be cancelled"


class NotFound(AIJobsError):
    """Not found"""

    status_code = 404
    title = "Not found"


class JobNotFound(NotFound):
    """Job not found"""

    title = "Job not found"


class ModelNotFound(NotFound):
    """Model not found"""

    title = "Model not found"


class InvalidInput(AIJobsError):
    """The request asks for something this server does not accept"""

    status_code = 422
    title = "Validation error"


class IdempotencyKeyReused(AIJobsError):
    """This Idempotency-Key was sent with a different request"""

    status_code = 422
    title = "Idempotency key reused"


class KeyNameTaken(AIJobsError):
    """An API key with this name exists already"""

    status_code = 409
    title = "Key name taken"


class Unauthorized(AIJobsError):
    """Missing or invalid credentials"""

    status_code = 401
    title = "Unauthorized"


class Forbidden(AIJobsError):
    """This job or model belongs to someone else"""

    status_code = 403
    title = "Forbidden"


class IssuerUnavailable(AIJobsError):
    """The token issuer's signing keys cannot be fetched"""

    status_code = 503
    title = "Service unavailable"


class TooManyRequests(AIJobsError):
    """Too many requests"""

    status_code = 429
    title = "Too many requests"

    def __init__(self, detail: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.headers = headers or {}


class QueueFull(TooManyRequests):
    """A pending-job limit is reached"""


class RateLimited(TooManyRequests):
    """The rate limit is reached"""


class StoreUnavailable(AIJobsError):
    """The job store is unavailable"""

    status_code = 503
    title = "Service unavailable"


class JobFailure(AIJobsError):
    """A job failed; the message is shown to the user as the job's error."""

    title = "Job failed"
