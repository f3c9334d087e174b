"""Who may call the server and where it may listen: the token check, loopback detection, bind errors."""

from __future__ import annotations

import errno
import hmac
import socket
from collections.abc import Callable
from typing import Any

import grpc

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class TokenInterceptor(grpc.ServerInterceptor):
    """Requires `authorization: Bearer TOKEN` on every call except health checks (load balancers and
    supervisors probe those without credentials)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        if details.method.startswith("/grpc.health.v1.Health/"):
            return continuation(details)
        sent = dict(details.invocation_metadata or ()).get("authorization", "")
        sent_bytes = sent.encode() if isinstance(sent, str) else sent
        if hmac.compare_digest(sent_bytes, self._expected):
            return continuation(details)
        handler = continuation(details)
        if handler is None:
            return None
        message = "missing or wrong token" if sent else "this server needs a token"

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{message}; pass the token `impasto serve` was given")

        # The denial must have the same streaming shape as the handler it replaces.
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(deny)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)


def bind_problem(address: str) -> str:
    """Why grpc could not bind (it only says that it failed): try the same bind with a plain socket."""
    host, _, port = address.rpartition(":")
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.bind(infos[0][4])
    except (OSError, ValueError, IndexError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return "the port is already in use" if getattr(exc, "errno", None) == errno.EADDRINUSE else reason
    return "the address is not valid here"


def is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0]
    return host in LOOPBACK_HOSTS or host.startswith("127.")
