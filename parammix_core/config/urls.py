"""Locations in a config (the store, corpora, checkpoints): an unknown URL scheme is refused
at load, not after the base has been pre-trained."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import fsspec
from fsspec.core import split_protocol
from pydantic_core import PydanticCustomError

# The error type of a secret found in a config: its message never repeats the value.
SECRET_IN_CONFIG = "secret_in_config"
# Query parameters that sign or authorise a URL (Azure SAS `sig`, `X-Amz-Signature`, `token`).
SECRET_QUERY = (
    "sig",
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "pwd",
    "credential",
    "auth",
    "jwt",
    "session",
)
WHERE_SECRETS_GO = (
    "set them in the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ...) or name a "
    "Prefect Secret block in store.credentials_block"
)


def secret_in_url(url: str) -> str | None:
    """What part of `url` carries a secret (a password, a signed query), or None."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    if parts.password is not None:
        return "a password in user:password@host"
    if parts.username is not None:  # a token alone there (GitHub's https://TOKEN@host)
        return "a user name or token in user@host"
    names = [k for k, _ in parse_qsl(parts.query) if any(w in k.lower() for w in SECRET_QUERY)]
    return f"query parameter {names[0]!r}" if names else None


def urls_with_secrets(value: object, path: str = "") -> list[str]:
    """Dotted paths of every string at any depth of `value` (mappings, lists) that is a URL
    carrying a secret: no field of a config may hold one."""
    if isinstance(value, str):
        return [path] if secret_in_url(value) else []
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return []
    return [p for k, v in items for p in urls_with_secrets(v, f"{path}.{k}" if path else str(k))]


# fsspec filesystems that read only: a store there fails at its first write, after training.
READ_ONLY = ("reference", "zip", "tar", "libarchive", "http", "https", "github", "git")


def writable_scheme(url: str) -> str:
    """`known_scheme`, and one a store can be written to."""
    protocol, _ = split_protocol(known_scheme(url))
    if protocol in READ_ONLY:
        raise ValueError(
            f"{protocol}:// in {url!r} is read-only; the store needs a writable location (a "
            "local folder, s3://, gs://, az://, ...)"
        )
    return url


def known_scheme(url: str) -> str:
    """`url` if it is a local path or uses a scheme an installed fsspec backend serves, and
    carries no credentials (configs are flow parameters, shown in the UI and stored)."""
    secret = secret_in_url(url)
    if secret is not None:
        raise PydanticCustomError(
            SECRET_IN_CONFIG,
            "credentials in a URL are not accepted ({part}): {where}",
            {"part": secret, "where": WHERE_SECRETS_GO},
        )
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
