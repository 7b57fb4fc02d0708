"""End to end on an emulated cluster: the pipeline from `kubectl apply` to Ready.

Fetch Jobs run the real `modelpress fetch` against a moto S3 server; compression
Jobs are completed by the kubelet stand-in publishing a small real artifact with
chosen metrics (see tests/operator/kubelet.py)."""

from __future__ import annotations

import asyncio

from tests.operator.cluster import DEPLOYMENTS, JOBS, SERVICES
from tests.operator.conftest import NAMESPACE, Harness, metric_samples, model_manifest
from tests.pss import assert_restricted

from modelpress.api.kstatus import compute as kstatus

ALLOWED_VOLUMES = {"emptyDir", "secret", "configMap", "projected"}


async def test_happy_path_to_ready(harness: Harness) -> None:
    await harness.start_operator()
    await harness.apply(model_manifest("tiny", harness.store))
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)

    status = harness.status("tiny")
    assert status["observedGeneration"] == 1
    metadata = harness.model("tiny")["metadata"]
    assert "kopf" not in status, "kopf keeps its state in annotations, not in the strict status"
    assert kstatus(harness.model("tiny")).status == "Current", "Flux's wait is done"
    kopf_annotations = [a for a in metadata.get("annotations") or {} if a.startswith("kopf.")]
    assert kopf_annotations == [], "no diff-base copy of the spec on the object"
    assert metadata["finalizers"] == ["modelpress.dev/artifacts"]
    summary = status["summary"]
    assert summary["phase"] == "Ready"
    assert summary["variants"] == "2/2"
    assert 0.25 < summary["sizeRatio"] < 0.35  # w4, the smaller one
    assert summary["perplexityIncrease"] == 0.02
    assert summary["gpus"] == 0
    serving = status["serving"]
    assert serving["variant"] == "w4"
    assert serving["endpoint"] == f"http://tiny.{NAMESPACE}.svc:8000/v1"
    assert serving["strategy"] == "RollingUpdate"
    assert status["source"]["uri"].startswith(harness.store.root + "models/")

    jobs = harness.jobs("tiny")
    assert sorted(j["metadata"]["labels"]["modelpress.dev/component"] for j in jobs) == [
        "compress",
        "compress",
        "fetch",
    ]
    for job in jobs:
        assert_restricted(job, allowed_volumes=ALLOWED_VOLUMES, read_only_root=True)
        spec = job["spec"]
        assert spec["backoffLimit"] == 1 and spec["activeDeadlineSeconds"] > 0
        assert spec["ttlSecondsAfterFinished"] > 0
        owner = job["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "CompressedModel" and owner["controller"] is True
        container = spec["template"]["spec"]["containers"][0]
        text = " ".join(container["args"]) + str(container["env"])
        assert "operator-test-secret" not in text and "AWS_SECRET" not in text

    deployment = harness.cluster.get(DEPLOYMENTS, NAMESPACE, "tiny-vllm")
    assert deployment is not None
    assert_restricted(deployment, allowed_volumes=ALLOWED_VOLUMES, read_only_root=True)
    pod = deployment["spec"]["template"]["spec"]
    key = next(v["key"] for v in status["variants"] if v["name"] == "w4")
    server = pod["containers"][0]
    assert server["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert server["args"][:6] == [
        "--model",
        f"/models/{key}",
        "--served-model-name",
        "tiny",
        "--port",
        "8000",
    ]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["path"] == "/health"
    pull = pod["initContainers"][0]
    assert pull["args"] == ["pull", f"{harness.store.root}artifacts/{key}/", f"/models/{key}"]
    assert {
        "name": "MODELPRESS_STORAGE_CREDENTIALS_DIR",
        "value": "/var/run/secrets/modelpress/storage",
    } in pull["env"]
    service = harness.cluster.get(SERVICES, NAMESPACE, "tiny")
    assert service is not None and service["spec"]["ports"][0]["port"] == 8000

    variants = {v["name"]: v for v in status["variants"]}
    for name in ("w8", "w4"):
        entry = variants[name]
        assert entry["artifactUri"] == f"{harness.store.root}artifacts/{entry['key']}/"
        assert entry["metrics"]["perplexityIncrease"] == 0.02
        assert entry["footprint"]["fits"] is True
        assert {c["type"]: c["status"] for c in entry["conditions"]} == {
            "Ready": "True",
            "Compressed": "True",
            "QualityGate": "True",
            "Fits": "True",
        }
    assert sorted(harness.store.committed("artifacts")) == sorted(
        v["key"] for v in variants.values()
    )
    await harness.wait(lambda: harness.events("tiny"), "the Ready Event")
    await asyncio.sleep(1)
    events = [(e["type"], e["reason"]) for e in harness.events("tiny")]
    assert events == [("Normal", "Ready")], "on the way up, only Ready is news"


async def test_applying_the_same_spec_again_changes_nothing(harness: Harness) -> None:
    await harness.start_operator()
    manifest = model_manifest("tiny", harness.store)
    await harness.apply(manifest)
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)
    await asyncio.sleep(3)  # let the last Events be posted
    jobs_before = sorted(j["metadata"]["name"] for j in harness.cluster.all(JOBS))
    events_before = [e["metadata"]["name"] for e in harness.events("tiny")]
    requests_before = len(harness.cluster.seen)

    await harness.apply(manifest)  # a GitOps tool re-applying the same spec
    await asyncio.sleep(5)  # more than two resync periods

    assert harness.model("tiny")["metadata"]["generation"] == 1
    assert sorted(j["metadata"]["name"] for j in harness.cluster.all(JOBS)) == jobs_before
    new_events = [e for e in harness.events("tiny") if e["metadata"]["name"] not in events_before]
    assert new_events == [], [(e["reason"], e["message"]) for e in new_events]
    writes = [
        r
        for r in harness.cluster.seen[requests_before:]
        if r.method in ("POST", "PATCH", "PUT", "DELETE") and "kmock" not in r.agent
    ]
    assert writes == [], [f"{r.method} {r.path}" for r in writes]


async def test_metrics_endpoint_counts_the_work(harness: Harness) -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/metrics"
    await harness.start_operator(metrics_endpoint=url)
    await harness.apply(model_manifest("tiny", harness.store))
    await harness.wait_condition("tiny", "Ready", "True", timeout=45)

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    found = metric_samples(await asyncio.to_thread(scrape))
    assert found[("modelpress_models", (("phase", "Ready"),))] == 1
    assert found[("modelpress_variants", (("gate", "pass"),))] == 2
    served = (
        "modelpress_serving_info",
        (("model", "tiny"), ("namespace", NAMESPACE), ("variant", "w4")),
    )
    assert found[served] == 1
    assert found[("modelpress_children_created_total", (("kind", "Job"),))] == 3
    assert found[("modelpress_jobs", (("component", "compress"), ("phase", "succeeded")))] == 2
    assert found[("modelpress_reconcile_duration_seconds_count", ())] >= 3
    assert found[("process_resident_memory_bytes", ())] > 0
