"""Store errors, and how a backend's connection failures are recognised."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A missing, torn, tampered or unloadable artifact; the message names key and file."""


class StoreUnavailable(StoreError):
    """The store's endpoint cannot be reached: may pass, worth a retry."""


def _is_connection_error(err: BaseException) -> bool:
    names = {type(e).__name__ for e in (err, err.__cause__, err.__context__) if e is not None}
    return bool(
        names
        & {
            "EndpointConnectionError",
            "ConnectionError",
            "ConnectTimeoutError",
            "ClientConnectorError",
            "ServerDisconnectedError",
            "ConnectionRefusedError",
        }
    )
