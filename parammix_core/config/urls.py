"""Locations in a config (the store, corpora, checkpoints): an unknown URL scheme is refused
at load, not after the base has been pre-trained."""

from __future__ import annotations

import fsspec
from fsspec.core import split_protocol


def known_scheme(url: str) -> str:
    """`url` if it is a local path or uses a scheme an installed fsspec backend serves."""
    protocol, _ = split_protocol(url)
    if protocol is None or protocol == "file":
        return url
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise ValueError(
            f"unknown URL scheme {protocol!r} in {url!r}; use a local path or one of: "
            "s3://, gs://, az://, memory://, https://, ..."
        ) from None
    except ImportError as err:
        raise ValueError(
            f"{protocol}:// in {url!r} needs a package that is not installed ({err})"
        ) from None
    return url
