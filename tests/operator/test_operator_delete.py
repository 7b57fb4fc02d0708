"""Deleting a CompressedModel honours spec.deletionPolicy (emulated cluster, moto S3)."""

from __future__ import annotations

import asyncio

import pytest
from tests.operator.conftest import NAMESPACE, Harness, model_manifest


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
async def test_delete_honours_the_deletion_policy(harness: Harness, policy: str) -> None:
    await harness.start_operator()
    alpha = model_manifest("alpha", harness.store, deletionPolicy=policy)
    beta = model_manifest("beta", harness.store)
    beta["spec"]["variants"] = [v for v in beta["spec"]["variants"] if v["name"] == "w8"]
    await harness.apply(alpha)
    await harness.apply(beta)
    await harness.wait_condition("alpha", "Ready", "True", timeout=45)
    await harness.wait_condition("beta", "Ready", "True", timeout=45)
    keys = {v["name"]: v["key"] for v in harness.status("alpha")["variants"]}
    shared = next(v["key"] for v in harness.status("beta")["variants"])
    assert shared == keys["w8"], "same base, recipe and evaluation: one artifact for both"
    bases = harness.store.committed("models")
    assert sorted(harness.store.committed("artifacts")) == sorted(keys.values())

    await harness.delete("alpha")
    await harness.wait(lambda: harness.model("alpha") is None, "alpha to be gone", timeout=30)

    remaining = harness.store.committed("artifacts")
    if policy == "Retain":
        assert sorted(remaining) == sorted(keys.values())
    else:
        assert remaining == [shared], "w4 deleted; w8 kept because beta still uses it"
        assert not harness.jobs("alpha"), "alpha's Jobs are stopped before its artifacts go"
        await harness.wait(
            lambda: any(e["reason"] == "ArtifactsDeleted" for e in harness.events("alpha")),
            "the ArtifactsDeleted Event",
        )
    assert harness.store.committed("models") == bases, "the shared base model is never deleted"
    assert harness.condition("beta", "Ready")["status"] == "True"


async def test_artifacts_are_deleted_only_once_the_jobs_pods_are_gone(harness: Harness) -> None:
    await harness.start_operator()
    await harness.apply(model_manifest("alpha", harness.store, deletionPolicy="Delete"))
    await harness.wait_condition("alpha", "Ready", "True", timeout=45)
    job = harness.jobs("alpha")[0]
    name = job["metadata"]["name"]
    labels = {"job-name": name, **job["spec"]["template"]["metadata"]["labels"]}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-x", "namespace": NAMESPACE, "labels": labels},
        "spec": {"containers": [{"name": "compress", "image": "c"}]},
        "status": {"phase": "Running"},
    }
    await harness.create("v1/pods", pod)  # a pod that has not stopped yet
    artifacts = harness.store.committed("artifacts")
    await harness.delete("alpha")
    await asyncio.sleep(1.0)
    assert harness.store.committed("artifacts") == artifacts, "nothing deleted under a pod"
    await harness.delete_object("v1/pods", f"{name}-x")
    await harness.wait(lambda: harness.model("alpha") is None, "alpha to be gone", timeout=30)
    assert harness.store.committed("artifacts") == []
