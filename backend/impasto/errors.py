"""Domain errors. Each carries the gRPC status code name it maps to (the server maps them in one place)
and a hint saying what the user can do about it."""

from __future__ import annotations


class ImpastoError(Exception):
    """Base of every error a user can cause; `code` names a gRPC status code."""

    code = "UNKNOWN"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidArgument(ImpastoError):
    code = "INVALID_ARGUMENT"


class NotFound(ImpastoError):
    code = "NOT_FOUND"


class ResourceExhausted(ImpastoError):
    code = "RESOURCE_EXHAUSTED"


class Cancelled(ImpastoError):
    code = "CANCELLED"


class DeadlineExceeded(ImpastoError):
    code = "DEADLINE_EXCEEDED"


class ModelFileError(ImpastoError):
    """A weight file that is corrupt, truncated, of an unknown layout, or unsafe to load."""

    code = "FAILED_PRECONDITION"


class Unauthenticated(ImpastoError):
    code = "UNAUTHENTICATED"


class Unavailable(ImpastoError):
    """The backend is not running or cannot be reached."""

    code = "UNAVAILABLE"


class OutOfMemory(ImpastoError):
    """Raised by the tiler when a tile would not fit the memory budget (or the device ran out)."""

    code = "RESOURCE_EXHAUSTED"


BY_CODE: dict[str, type[ImpastoError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        ResourceExhausted,
        Cancelled,
        DeadlineExceeded,
        ModelFileError,
        Unauthenticated,
        Unavailable,
    )
}


def from_code(code: str, message: str) -> ImpastoError:
    """The exception class for a status code name (used by clients to re-raise server errors)."""
    return BY_CODE.get(code, ImpastoError)(message)
