"""Config of where artifacts live and how the flow runs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from parammix_core.config.base import Count, Flag, FreeForm, NotBool, Strict, Text
from parammix_core.config.urls import WHERE_SECRETS_GO, urls_with_secrets, writable_scheme

# Option names that would carry a secret (an Authorization header, an Azure connection string
# holding AccountKey=...): never accepted in a config (configs are flow parameters, shown in
# the UI and stored in Prefect's database).
SECRET_OPTIONS = (
    "key",
    "secret",
    "token",
    "password",
    "passwd",
    "pwd",
    "session",
    "auth",
    "credential",
    "connection_string",
)


def secret_name(key: object) -> bool:
    """Whether an option or variable is named like a secret (`HF_TOKEN`, `passwd`, ...)."""
    return any(s in str(key).lower() for s in SECRET_OPTIONS)


def _secret_keys(options: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of options (at any depth, lists included) that look like they carry a
    secret, by their name or by a URL value with a password or a signed query."""
    out = []
    for key, value in options.items():
        name = f"{prefix}{key}"
        if secret_name(key):
            out.append(name)
        elif isinstance(value, dict):
            out += _secret_keys(value, f"{name}.")
        else:
            out += [f"{name}.{p}" if p else name for p in urls_with_secrets(value)]
    return out


def _refuse_secrets(options: dict) -> dict:
    bad = sorted(_secret_keys(options))
    if bad:
        raise ValueError(
            f"secrets are not accepted in a config ({', '.join(bad)}): {WHERE_SECRETS_GO}"
        )
    return options


class StoreConfig(Strict):
    """Where artifacts live. Credentials come from the environment or a Prefect Secret block."""

    url: Annotated[Text, AfterValidator(writable_scheme)] = Field(
        ".parammix/store", min_length=1, description="Local folder or fsspec URL (s3://b/p)."
    )
    storage_options: FreeForm = Field(
        default_factory=dict,
        description="fsspec options without secrets (endpoint_url, ...); keys come from the env "
        "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or credentials_block.",
    )
    credentials_block: Annotated[str, Field(max_length=256)] | None = Field(
        None,
        description="Name of a Prefect Secret block holding {key, secret[, token]} for the store.",
    )
    verify: Literal["sha256", "size"] = Field(
        "sha256", description="What readers check against the manifest when they use a file."
    )
    part_size_mb: Count(5120, lo=5) = Field(
        16, description="Multipart upload part size for large files on S3 (>= 5 MiB)."
    )

    @field_validator("storage_options")
    @classmethod
    def _no_secrets(cls, options: dict) -> dict:
        return _refuse_secrets(options)


NonNegativeFloat = Annotated[float, NotBool, Field(ge=0, le=10_000, allow_inf_nan=False)]


class RayTaskResources(Strict):
    """What one task reserves on a Ray cluster (Ray's `@ray.remote` options)."""

    num_cpus: NonNegativeFloat = Field(1, description="CPUs reserved per task (fractions allowed).")
    num_gpus: NonNegativeFloat = Field(0, description="GPUs reserved per task (fractions allowed).")
    memory_mb: Count(1 << 30) | None = Field(None, description="Memory reserved per task, MiB.")


class RayConfig(Strict):
    """Where tasks run with runtime.task_runner: ray, and what each kind reserves there."""

    address: Text | None = Field(
        None,
        description="A running cluster (ray://head:10001, or auto inside one); none starts a "
        "local Ray instance for the flow.",
    )
    local_num_cpus: Count(100_000) | None = Field(
        None, description="CPUs of a local instance started for the flow (none: all)."
    )
    runtime_env: FreeForm = Field(
        default_factory=dict,
        description="Ray runtime_env for a remote cluster (working_dir, pip, env_vars without "
        "secrets).",
    )
    train_expert: RayTaskResources = Field(default_factory=RayTaskResources)

    @field_validator("runtime_env")
    @classmethod
    def _no_secrets(cls, env: dict) -> dict:  # env_vars: {HF_TOKEN: ...} would be shown
        return _refuse_secrets(env)

    merge_and_evaluate: RayTaskResources = Field(default_factory=RayTaskResources)
    other_tasks: RayTaskResources = Field(default_factory=RayTaskResources)


class RuntimeConfig(Strict):
    device: Literal["cpu", "cuda", "auto"] = "auto"
    torch_threads: Count(1024) = Field(
        1, description="Intra-op threads per task; 1 is fastest for tiny models on small CPUs."
    )
    max_workers: Count(1024) = Field(2, description="Tasks run at once in the flow.")
    progress: Flag = Field(True, description="tqdm bars in the terminal.")
    verify_cached: Flag = Field(
        False,
        description="Re-hash (sha256) every stored artifact a stage would reuse instead of "
        "trusting Prefect's cache (parammix run --verify).",
    )
    task_runner: Literal["thread", "ray"] = Field(
        "thread", description="thread: a pool of max_workers here; ray: tasks on a Ray cluster."
    )
    ray: RayConfig = Field(default_factory=RayConfig)
