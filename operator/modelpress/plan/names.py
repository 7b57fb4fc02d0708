"""Names, labels and annotations of the objects the operator creates.

Names are deterministic: they come from the model's name, the variant's name and
a hash of what the object does, so a retried or restarted reconcile finds the
object it created before instead of creating another. With model names of at
most 32 characters and variant names of at most 20, every name fits in 63.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelpress.api.keys import content_key

DOMAIN = "modelpress.dev"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "modelpress"
LABEL_MODEL = f"{DOMAIN}/model"
LABEL_COMPONENT = f"{DOMAIN}/component"
LABEL_VARIANT = f"{DOMAIN}/variant"
LABEL_KEY = f"{DOMAIN}/key"
ANNOTATION_SPEC_HASH = f"{DOMAIN}/spec-hash"
ANNOTATION_ARTIFACT = f"{DOMAIN}/artifact-uri"
ANNOTATION_RETRY = f"{DOMAIN}/retry"
ANNOTATION_AUTOSCALER = f"{DOMAIN}/autoscaler"

FETCH = "fetch"
COMPRESS = "compress"
SERVING = "serving"
#: Index key part of the headless Services of indexed Jobs (distillations over nodes).
GANG = "gang"

HASH_CHARS = 8


def short_hash(value: Any) -> str:
    """Eight hex characters of the canonical JSON of `value`."""
    return content_key(value)[:HASH_CHARS]


def spec_hash(obj: Mapping[str, Any]) -> str | None:
    """The `spec-hash` annotation of a child, as desired or as seen."""
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_SPEC_HASH)


def deployment_name(model: str) -> str:
    return f"{model}-vllm"


def serving_policy_name(model: str) -> str:
    return f"{model}-serving"


def jobs_policy_name(model: str) -> str:
    return f"{model}-jobs"


def service_name(model: str) -> str:
    """The Service carries the model's own name: clients address `http://<model>.<ns>.svc`."""
    return model


def labels(model: str, component: str, **extra: str) -> dict[str, str]:
    """Labels every child carries; the operator finds its children by them."""
    found = {MANAGED_BY: MANAGER, LABEL_MODEL: model, LABEL_COMPONENT: component}
    for name, value in extra.items():
        found[f"{DOMAIN}/{name}"] = value
    return found
