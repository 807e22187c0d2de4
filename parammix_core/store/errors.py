"""Store errors, and how a backend's connection failures are recognised."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A missing, torn, tampered or unloadable artifact; the message names key and file."""


class StoreUnavailable(StoreError):
    """The store's endpoint cannot be reached: may pass, worth a retry."""


def missing(what: str) -> StoreError:
    """An artifact a stage expected is absent; a Prefect cache kept from before it was lost (a
    store restored from a backup keeps its identity) would name it on every run."""
    return StoreError(
        f"{what}; if a cached stage still names it, `parammix run --verify` "
        "(runtime.verify_cached) builds it again"
    )


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
