"""Pieces every pod the operator creates shares: Pod Security Standard "restricted"
security contexts, scratch volumes, and credentials mounted from Secrets as files.

Secrets are referenced, never read into a pod spec: the storage Secret is mounted
at STORAGE_CREDENTIALS_DIR (named by MODELPRESS_STORAGE_CREDENTIALS_DIR) and the
Hub token at HF_TOKEN_DIR/<key> (named by HF_TOKEN_PATH).
"""

from __future__ import annotations

from typing import Any

from modelpress.api.spec import CompressedModelSpec
from modelpress.config import OperatorConfig

#: An unprivileged user id present in distroless and most slim images.
RUN_AS_USER = 65532
STORAGE_CREDENTIALS_DIR = "/var/run/secrets/modelpress/storage"
HF_TOKEN_DIR = "/var/run/secrets/modelpress/huggingface"
CREDENTIALS_DIR_ENV = "MODELPRESS_STORAGE_CREDENTIALS_DIR"
HF_TOKEN_PATH_ENV = "HF_TOKEN_PATH"
STORAGE_VOLUME = "storage-credentials"
HF_TOKEN_VOLUME = "huggingface-token"
TMP_DIR = "/tmp"
WORK_DIR = "/work"


def pod_security_context() -> dict[str, Any]:
    """Non-root, RuntimeDefault seccomp; fsGroup so mounted Secrets are readable."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """No privilege escalation, no capabilities, read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def empty_dir(name: str, size_limit: str | None = None, memory: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if memory:
        spec["medium"] = "Memory"
    if size_limit:
        spec["sizeLimit"] = size_limit
    return {"name": name, "emptyDir": spec}


def home_env(home: str) -> list[dict[str, str]]:
    """Point every cache a library may write at a writable directory (the root is read-only)."""
    return [
        {"name": "HOME", "value": home},
        {"name": "TMPDIR", "value": home},
        {"name": "XDG_CACHE_HOME", "value": f"{home}/.cache"},
        {"name": "HF_HOME", "value": f"{home}/.cache/huggingface"},
        {"name": "TRITON_CACHE_DIR", "value": f"{home}/.cache/triton"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def storage_mounts(
    spec: CompressedModelSpec,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, str]]]:
    """(volumes, volumeMounts, env) giving a container the store's credentials, if any."""
    if spec.storage.secret_ref is None:
        return [], [], []
    volume = {
        "name": STORAGE_VOLUME,
        "secret": {"secretName": spec.storage.secret_ref.name, "defaultMode": 0o440},
    }
    mount = {"name": STORAGE_VOLUME, "mountPath": STORAGE_CREDENTIALS_DIR, "readOnly": True}
    env = [{"name": CREDENTIALS_DIR_ENV, "value": STORAGE_CREDENTIALS_DIR}]
    return [volume], [mount], env


def hf_token_mounts(
    spec: CompressedModelSpec,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, str]]]:
    """(volumes, volumeMounts, env) giving the fetch container the Hub token, if any."""
    hub = spec.source.huggingface
    if hub is None or hub.token_secret_ref is None:
        return [], [], []
    ref = hub.token_secret_ref
    volume = {
        "name": HF_TOKEN_VOLUME,
        "secret": {
            "secretName": ref.name,
            "items": [{"key": ref.key, "path": ref.key}],
            "defaultMode": 0o440,
        },
    }
    mount = {"name": HF_TOKEN_VOLUME, "mountPath": HF_TOKEN_DIR, "readOnly": True}
    env = [{"name": HF_TOKEN_PATH_ENV, "value": f"{HF_TOKEN_DIR}/{ref.key}"}]
    return [volume], [mount], env


def pull_secrets(config: OperatorConfig) -> list[dict[str, str]]:
    return [{"name": name} for name in config.image_pull_secrets]


def pod_spec(
    config: OperatorConfig,
    *,
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    service_account: str,
    init_containers: list[dict[str, Any]] | None = None,
    restart_policy: str | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A restricted pod spec; the ServiceAccount token is never mounted (no pod talks
    to the Kubernetes API)."""
    spec: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": containers,
        "volumes": volumes,
    }
    if init_containers:
        spec["initContainers"] = init_containers
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    if service_account:
        spec["serviceAccountName"] = service_account
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = [dict(t) for t in tolerations]
    secrets = pull_secrets(config)
    if secrets:
        spec["imagePullSecrets"] = secrets
    return spec
