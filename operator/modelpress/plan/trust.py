"""What a model's author may make the operator do with the operator's own identity.

The operator reads (and under deletionPolicy Delete, deletes) in the model's store,
and starts pods that get the model's Secrets. Whoever can write a CompressedModel
could otherwise point that reach anywhere: at a store the operator's own cloud
identity can read, at a host inside the cluster through AWS_ENDPOINT_URL, at the
operator's own filesystem through file://, at an image of their choosing, or at
a base model recorded outside their store. The platform team opens what it
allows in the operator's `trust` settings (docs/security.md); the rest is
refused here with a condition that names the field.
"""

from __future__ import annotations

from modelpress.api.keys import base_key
from modelpress.api.reasons import Reason
from modelpress.api.spec import CompressedModelSpec
from modelpress.config import Trust
from modelpress.plan.observed import Blocker, SourceRecord
from modelpress.plan.progress import Verdict
from modelpress.plan.recipes import store_prefix

SETTINGS = "the operator's trust settings (Helm values trust.*)"


def store_blocker(spec: CompressedModelSpec, namespace: str, trust: Trust) -> Blocker | None:
    """Why the operator must not touch this model's store at all, or None."""
    uri = spec.storage.uri
    if uri.startswith("file://") and not trust.allow_file_stores:
        return Blocker(
            Reason.STORE_NOT_ALLOWED,
            f"spec.storage.uri is {uri}: a file:// store would be the operator's own "
            "filesystem; use an s3:// store (file:// is for `modelpress run` on one machine)",
        )
    if spec.storage.secret_ref is None and not trust.ambient_allowed(namespace):
        return Blocker(
            Reason.STORE_NOT_ALLOWED,
            f"spec.storage.secretRef is required in namespace {namespace}: the operator does "
            "not lend its own cloud identity to models here; create a Secret with the store's "
            f"credentials and name it (or ask the platform team to allow it in {SETTINGS})",
        )
    return None


def endpoint_blocker(secret: str, endpoint: str | None, trust: Trust) -> Blocker | None:
    """Why the operator must not send signed requests to a Secret's endpoint, or None."""
    if trust.endpoint_allowed(endpoint):
        return None
    allowed = ", ".join(trust.store_endpoints) or "AWS's own endpoints only"
    return Blocker(
        Reason.STORE_NOT_ALLOWED,
        f"storage Secret {secret!r} names AWS_ENDPOINT_URL {endpoint}, which is not an "
        f"allowed store endpoint ({allowed}): use an allowed endpoint, or ask the platform "
        f"team to add it to {SETTINGS}",
    )


def image_problem(field: str, image: str | None, trust: Trust) -> Verdict | None:
    """Why a custom image named in the spec may not run, or None."""
    if image is None or trust.image_allowed(image):
        return None
    allowed = ", ".join(trust.image_prefixes) or "none: only the operator's own images"
    return Verdict(
        Reason.IMAGE_NOT_ALLOWED,
        f"{field} {image!r} is not under an allowed image prefix ({allowed}): its pods would "
        f"get this model's Secrets; remove it, or ask the platform team to allow the "
        f"registry in {SETTINGS}",
    )


def record_blocker(spec: CompressedModelSpec, record: SourceRecord) -> Blocker | None:
    """A source record must describe a base model stored under this model's own store,
    at the place its own id and revision lead to; anything else is not followed."""
    expected_key = base_key(record.id, record.revision)
    expected_uri = f"{store_prefix(spec)}models/{record.key}/"
    if record.key == expected_key and record.uri == expected_uri:
        return None
    return Blocker(
        Reason.UNTRUSTED_RECORD,
        f"the store's source record says the base model is at {record.uri}, which is not "
        f"{expected_uri if record.key == expected_key else 'where its id and revision lead'}: "
        "it is not followed. Delete the record under "
        f"{store_prefix(spec)}sources/ to fetch the base model again",
    )
