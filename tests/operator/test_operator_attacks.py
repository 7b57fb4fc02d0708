"""Someone allowed to create, patch or edit the status of a CompressedModel tries to
reach beyond it (emulated cluster, moto S3). Each attempt is refused with a clear
condition, and nothing outside the model's own store prefix is touched: the whole
bucket is listed before and after."""

from __future__ import annotations

import base64
import json

import pytest
from tests.operator.conftest import NAMESPACE, Harness, model_manifest


def _plant_other_teams_data(harness: Harness) -> list[str]:
    client = harness.store.client()
    for key in ("other-team/artifacts/k1/manifest.json", "other-team/models/m/weights.bin"):
        client.put_object(Bucket=harness.store.bucket, Key=key, Body=b"theirs")
    return harness.store.keys()


async def test_an_edited_status_is_put_back_to_the_truth(harness: Harness) -> None:
    await harness.start_operator()
    await harness.apply(model_manifest("tiny", harness.store))
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)
    honest = harness.status("tiny")
    forged = [
        dict(v, artifactUri=f"s3://{harness.store.bucket}/other-team/") for v in honest["variants"]
    ]
    await harness.patch_status("tiny", {"variants": forged, "serving": {"variant": "w8"}})
    assert harness.status("tiny")["serving"]["variant"] == "w8"

    def repaired() -> bool:
        status = harness.status("tiny")
        return status["variants"] == honest["variants"] and status["serving"] == honest["serving"]

    await harness.wait(repaired, "the status to be written again from the truth", timeout=10)


async def test_deletion_never_follows_an_edited_status_out_of_the_model_prefix(
    harness: Harness,
) -> None:
    await harness.start_operator()
    await harness.apply(model_manifest("tiny", harness.store, deletionPolicy="Delete"))
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)
    await harness.stop_operator()  # so that nothing repairs the status before the delete
    before = _plant_other_teams_data(harness)
    victims = [f"s3://{harness.store.bucket}/other-team/", f"s3://{harness.store.bucket}/base/"]
    status = harness.status("tiny")
    forged = [dict(v, artifactUri=uri) for v, uri in zip(status["variants"], victims, strict=True)]
    await harness.patch_status("tiny", {"variants": forged})

    await harness.start_operator()
    await harness.delete("tiny")
    await harness.wait(lambda: harness.model("tiny") is None, "tiny to be gone", timeout=30)
    after = harness.store.keys()
    outside = [k for k in before if not k.startswith("store/artifacts/")]
    assert [k for k in outside if k not in after] == [], "nothing outside its artifacts went"
    assert harness.store.committed("artifacts") == [], "its own artifacts did go"


async def test_a_service_of_the_same_name_is_never_taken_over(harness: Harness) -> None:
    theirs = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "tiny", "namespace": NAMESPACE, "labels": {"app": "theirs"}},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 80}]},
    }
    await harness.create("v1/services", theirs)
    await harness.start_operator()
    await harness.apply(model_manifest("tiny", harness.store))
    serving = await harness.wait_condition("tiny", "Serving", "False", "NameConflict", timeout=45)
    assert "Service ml/tiny already exist(s)" in serving["message"]
    service = harness.cluster.get("v1/services", NAMESPACE, "tiny")
    assert service is not None
    assert service["spec"]["selector"] == {"app": "theirs"}, "their selector is untouched"
    assert not service["metadata"].get("ownerReferences"), "never adopted"
    assert harness.status("tiny")["summary"]["phase"] == "Failed"

    await harness.delete_object("v1/services", "tiny")  # they move it out of the way
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)


async def _refused(harness: Harness, manifest: dict, condition: str, reason: str) -> dict:
    before = harness.store.keys()
    await harness.apply(manifest)
    found = await harness.wait_condition("tiny", condition, "False", reason, timeout=30)
    assert harness.jobs("tiny") == [], "no Job started"
    assert harness.store.keys() == before, "nothing in the bucket touched"
    return found


async def test_no_secret_means_no_borrowed_identity(harness: Harness) -> None:
    await harness.start_operator()
    manifest = model_manifest("tiny", harness.store)
    del manifest["spec"]["storage"]["secretRef"]
    found = await _refused(harness, manifest, "SourceReady", "StoreNotAllowed")
    assert "spec.storage.secretRef is required in namespace ml" in found["message"]


async def test_a_secret_cannot_redirect_the_operator_to_another_endpoint(
    harness: Harness,
) -> None:
    await harness.start_operator()
    data = dict(harness.store.secret_data())
    data["AWS_ENDPOINT_URL"] = base64.b64encode(b"http://kube-apiserver.internal:6443").decode()
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
              "metadata": {"name": "redirect", "namespace": NAMESPACE}}  # fmt: skip
    await harness.create("v1/secrets", secret)
    manifest = model_manifest("tiny", harness.store)
    manifest["spec"]["storage"]["secretRef"] = {"name": "redirect"}
    found = await _refused(harness, manifest, "SourceReady", "StoreNotAllowed")
    assert "http://kube-apiserver.internal:6443" in found["message"]
    assert "not an allowed store endpoint" in found["message"]


async def test_a_file_store_is_refused_in_a_cluster(harness: Harness) -> None:
    await harness.start_operator()
    manifest = model_manifest("tiny", harness.store)
    manifest["spec"]["storage"] = {"uri": "file:///etc/", "secretRef": {"name": "artifact-store"}}
    found = await _refused(harness, manifest, "SourceReady", "StoreNotAllowed")
    assert "spec.storage.uri is file:///etc/" in found["message"]


async def test_an_image_outside_the_allowed_registries_never_runs(harness: Harness) -> None:
    await harness.start_operator()
    manifest = model_manifest("tiny", harness.store)
    manifest["spec"]["compression"]["image"] = "evil.example.com/steal-secrets:1"
    found = await _refused(harness, manifest, "SourceReady", "ImageNotAllowed")
    assert "spec.compression.image 'evil.example.com/steal-secrets:1'" in found["message"]


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ({"id": "x", "revision": "y", "key": "k", "uri": "s3://{bucket}/base/"}, "is not followed"),
        ({"id": "x", "uri": "s3://{bucket}/base/"}, "is malformed"),
        (["not", "a", "record"], "is malformed"),
    ],
    ids=["points elsewhere", "missing keys", "not a mapping"],
)
async def test_a_hostile_source_record_is_not_followed(
    harness: Harness, record: object, words: str
) -> None:
    from modelpress.sources import record_uri

    manifest = model_manifest("tiny", harness.store)
    where = record_uri(harness.store.root, manifest["spec"]["source"])
    body = json.dumps(record).replace("{bucket}", harness.store.bucket).encode()
    key = where.removeprefix(f"s3://{harness.store.bucket}/")
    harness.store.client().put_object(Bucket=harness.store.bucket, Key=key, Body=body)
    await harness.start_operator()
    found = await _refused(harness, manifest, "SourceReady", "UntrustedRecord")
    assert words in found["message"] and "elete" in found["message"]


async def test_the_endpoint_is_fenced_and_keyed(harness: Harness) -> None:
    """A NetworkPolicy admits only the model's own namespace to the vLLM port, and the
    server requires the API key from the named Secret."""
    await harness.start_operator()
    manifest = model_manifest("tiny", harness.store)
    manifest["spec"]["serving"]["apiKeySecretRef"] = {"name": "tiny-api-key", "key": "key"}
    await harness.apply(manifest)
    serving = await harness.wait_condition("tiny", "Serving", "False", "SecretNotFound")
    assert "API key Secret 'tiny-api-key' does not exist" in serving["message"]

    key = base64.b64encode(b"s3cret").decode()
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": {"key": key},
              "metadata": {"name": "tiny-api-key", "namespace": NAMESPACE}}  # fmt: skip
    await harness.create("v1/secrets", secret)
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)
    policy = harness.cluster.get("networking.k8s.io/v1/networkpolicies", NAMESPACE, "tiny-serving")
    assert policy is not None
    assert policy["spec"]["podSelector"]["matchLabels"]["modelpress.dev/component"] == "serving"
    assert policy["spec"]["ingress"] == [
        {"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 8000}]}
    ]
    deployment = harness.cluster.get("apps/v1/deployments", NAMESPACE, "tiny-vllm")
    assert deployment is not None
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "VLLM_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "tiny-api-key", "key": "key"}}} in server["env"]  # fmt: skip
