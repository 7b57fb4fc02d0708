"""Fixtures for the storage and sources suites: a real S3-protocol server (moto) on
127.0.0.1, a TCP proxy that can cut it off mid-transfer, and stores of both kinds."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ACCESS_KEY = "modelpress-test-key"
SECRET_KEY = "modelpress-test-secret/with+slash"

_ISOLATED_PREFIXES = ("AWS_", "MODELPRESS_", "HF_")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real credentials, config files or Hub tokens leak into a test."""
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MODELPRESS_S3_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("MODELPRESS_S3_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("MODELPRESS_S3_READ_TIMEOUT", "5")


def _start_moto(port: int = 0):  # type: ignore[no-untyped-def]
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """Endpoint URL of an in-process moto S3 server on a random free port."""
    server = _start_moto()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def s3_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")


def create_bucket(endpoint: str) -> str:
    import boto3

    name = f"mp-{uuid.uuid4().hex[:16]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_keys() -> tuple[str, str]:
    """The (access key id, secret) the moto fixtures use."""
    return ACCESS_KEY, SECRET_KEY


@pytest.fixture
def s3_bucket(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server; the AWS environment points at it."""
    s3_env(monkeypatch, moto_server)
    return create_bucket(moto_server)


@pytest.fixture(params=["file", "s3"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A storage root of each kind, empty, with working credentials in the environment."""
    if request.param == "file":
        return (tmp_path / "store").as_uri() + "/"
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/root/"


class TcpProxy:
    """Forwards 127.0.0.1:port to a backend; `stop()` drops every connection at once,
    which is what a client sees when the storage server dies."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._running = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._running = True
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        self._running = False
        with self._lock:
            doomed = list(self._sockets)
            self._sockets.clear()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._running:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.backend_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if not self._running:
                    client.close()
                    upstream.close()
                    return
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        pair = {client: upstream, upstream: client}
        try:
            while True:
                readable, _, _ = select.select(list(pair), [], [], 0.5)
                if not self._running and not readable:
                    return
                for sock in readable:
                    data = sock.recv(1 << 20)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._sockets.difference_update(pair)


@pytest.fixture
def s3_proxy(
    moto_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TcpProxy]:
    """A cuttable path to the moto server; the AWS environment points through it."""
    proxy = TcpProxy(int(moto_server.rsplit(":", 1)[1]))
    proxy.start()
    s3_env(monkeypatch, proxy.endpoint)
    yield proxy
    proxy.stop()


def _write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture
def write_tree():  # type: ignore[no-untyped-def]
    """`write_tree(root, {relative path: bytes})` -> root."""
    return _write_tree


def stored_key(uri: str, path: str) -> str:
    """Where the bytes of an artifact's file lie in the store (its content-addressed blob)."""
    from modelpress.storage import read_manifest

    manifest = read_manifest(uri)
    assert manifest is not None
    entry = manifest.file(path)
    assert entry is not None
    return entry.key


def blob_of(data: bytes) -> str:
    import hashlib

    from modelpress.storage.manifest import blob_key

    return blob_key(hashlib.sha256(data).hexdigest())
