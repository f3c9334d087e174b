"""Exceptions the plugins show to the user. Plain Python: safe to import anywhere."""

from __future__ import annotations


class BackendError(Exception):
    """The backend answered with an error. `code` is the gRPC status name ("INVALID_ARGUMENT",
    "NOT_FOUND", "RESOURCE_EXHAUSTED", "UNAUTHENTICATED", ...); `message` is the backend's explanation,
    written for users."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})" if message else code)
        self.code = code
        self.message = message


class BackendNotRunning(BackendError):
    """Nothing answered at the address: the backend has not been started (or listens elsewhere)."""

    def __init__(self, address: str, detail: str = "") -> None:
        message = (f"no Impasto backend is running at {address}; "
                   f"start it with `impasto serve --address {address}`")
        if detail:
            message += f" ({detail})"
        super().__init__("UNAVAILABLE", message)
        self.address = address


class OperationCancelled(BackendError):
    """The caller cancelled the operation (its `cancel` event was set) or the backend cancelled it."""

    def __init__(self, message: str = "the operation was cancelled") -> None:
        super().__init__("CANCELLED", message)
