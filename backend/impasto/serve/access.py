"""Who may call the server and where it may listen: the token check, loopback detection, bind errors, and
where a token comes from (shared by `impasto serve` and the `--remote` clients)."""

from __future__ import annotations

import errno
import hmac
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc

from impasto.errors import InvalidArgument

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


TOKEN_ENV = "IMPASTO_TOKEN"


def resolve_token(token: str | None, token_file: Path | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The token from `--token`, else `--token-file`, else $IMPASTO_TOKEN (None: no token). A token on the
    command line is visible to every local user (ps, /proc), so the file and the variable are preferred."""
    if token is not None and token_file is not None:
        raise InvalidArgument("give the token once: --token or --token-file, not both")
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"cannot read the token file {token_file}: {getattr(exc, 'strerror', None) or exc}",
                                  hint="pass a readable file holding only the token") from None
        if not text:
            raise InvalidArgument(f"the token file {token_file} is empty", hint="write the token into it")
        return text
    if token is not None:
        return token or None
    value = (os.environ if environ is None else environ).get(TOKEN_ENV, "").strip()
    return value or None


def check_token_transport(address: str, token: str | None, tls: bool, insecure: bool, tls_options: str) -> None:
    """Refuse to send (or accept) a token in plain text across a network unless the user said so."""
    if token and not tls and not insecure and not is_loopback(address):
        raise InvalidArgument(
            f"{address} is off this machine and without TLS the token would cross the network in plain text",
            hint=f"add {tls_options}, or --insecure-token if the network is private (a VPN or an SSH tunnel)",
        )
