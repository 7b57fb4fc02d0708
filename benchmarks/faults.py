"""The fault matrix: inject each fault into a running pipeline and check it converges
with nothing duplicated, lost or corrupted.

Every row runs the real operator (its kopf handlers, in a thread) against the
emulated API server (tests/operator/cluster.py, which admits, versions and checks
writes as the API server does) and a real S3-protocol server (moto) on loopback. For
each fault it reports: converged (and how long after the injection), duplicate Jobs
(a Job name created twice, or a compression Job run again for a key already
published), artifacts lost (a committed artifact that disappeared) or corrupted (any
committed artifact in the bucket failing `modelpress verify`), and conditions that
were wrong at the end.

    python benchmarks/faults.py --json results/faults.json
    python benchmarks/faults.py --only corrupt-manifest,oom   # some rows
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.operator.cluster import DEPLOYMENTS  # noqa: E402
from tests.operator.conftest import (  # noqa: E402
    NAMESPACE,
    Harness,
    emulated,
    make_store,
    model_manifest,
    sizes_by_variant,
)
from tests.operator.kubelet import Outcome  # noqa: E402


@dataclass
class Row:
    fault: str
    injected: str
    converged: bool = False
    seconds: float | None = None
    duplicate_jobs: int = 0
    artifacts_lost: int = 0
    artifacts_corrupted: int = 0
    wrong_conditions: list[str] = field(default_factory=list)
    error: str | None = None


class Run:
    """One fault's run: the harness, and the bookkeeping every row reports."""

    def __init__(self, harness: Harness, row: Row) -> None:
        self.h = harness
        self.row = row
        self.injected_at = time.monotonic()
        self.committed_before: set[str] = set()
        self.reruns: set[str] = set()
        """Parts of Job names run again on purpose by this fault."""

    def inject(self, what: str) -> None:
        self.row.injected = what
        self.injected_at = time.monotonic()
        self.committed_before = set(self.h.store.committed("artifacts"))

    async def until(self, predicate: Callable[[], Any], what: str, timeout: float = 60) -> None:
        await self.h.wait(predicate, what, timeout=timeout)
        self.row.seconds = round(time.monotonic() - self.injected_at, 2)
        self.row.converged = True

    def expect(self, model: str, type_: str, status: str, reason: str | None = None) -> None:
        found = self.h.condition(model, type_)
        if found.get("status") != status or (reason and found.get("reason") != reason):
            self.row.wrong_conditions.append(
                f"{model} {type_}={found.get('status')}/{found.get('reason')}"
            )

    def account(self) -> None:
        """Duplicates, losses and corruption, from the Jobs the kubelet ran and the bucket.

        A compression Job run twice is a duplicate unless the fault asked for it (a repair
        or new settings run a variant again on purpose: `reruns`)."""
        runs = Counter(self.h.kubelet.runs)
        self.row.duplicate_jobs = sum(
            count - 1
            for name, count in runs.items()
            if count > 1 and "-fetch-" not in name and not any(r in name for r in self.reruns)
        )
        after = set(self.h.store.committed("artifacts"))
        self.row.artifacts_lost = len(self.committed_before - after)
        self.row.artifacts_corrupted = len(_corrupt(self.h, after))


def _corrupt(harness: Harness, keys: set[str]) -> list[str]:
    from modelpress.storage.verify import verify_artifact

    with _store_env(harness):
        return [
            key for key in keys if not verify_artifact(f"{harness.store.root}artifacts/{key}/").ok
        ]


@contextlib.contextmanager
def _store_env(harness: Harness) -> Iterator[None]:
    """The store's credentials in this process's environment, as a person's shell has them."""
    wanted = harness.store.environment()
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _held(release: asyncio.Event) -> Callable[[dict[str, Any]], Outcome]:
    def behaviour(job: dict[str, Any]) -> Outcome:
        outcome = sizes_by_variant(job)
        if job["metadata"]["labels"].get("modelpress.dev/component") == "compress":
            outcome.hold = release
        return outcome

    return behaviour


async def _compress_jobs_held(run: Run) -> asyncio.Event:
    """Start the operator on model "tiny" and wait for its Jobs, held running until released."""
    release = asyncio.Event()
    run.h.kubelet.behaviour = _held(release)
    await run.h.start_operator()
    await run.h.apply(model_manifest("tiny", run.h.store))
    await run.h.wait(lambda: len(run.h.jobs("tiny")) == 3, "the Jobs", timeout=30)
    return release


# --- the faults ---------------------------------------------------------------------------


async def operator_killed(run: Run) -> None:
    """The operator restarts at every stage: before Jobs, while they run, after."""
    release = await _compress_jobs_held(run)
    run.inject("operator stopped and started while Jobs run, then after they finished")
    await run.h.stop_operator()
    await run.h.start_operator()
    release.set()
    await run.h.wait_condition("tiny", "VariantsReady", "True", timeout=45)
    await run.h.stop_operator()
    await run.h.start_operator()
    await run.until(lambda: run.h.condition("tiny", "Ready").get("status") == "True", "Ready")
    run.expect("tiny", "Ready", "True", "Ready")


async def two_models_one_key(run: Run) -> None:
    """Two models with the same recipe race to publish the shared artifact."""
    await run.h.start_operator()
    run.inject("two models with one recipe applied at once (shared artifacts)")
    await run.h.apply(model_manifest("alpha", run.h.store))
    await run.h.apply(model_manifest("beta", run.h.store))

    def both() -> bool:
        return all(run.h.condition(m, "Ready").get("status") == "True" for m in ("alpha", "beta"))

    await run.until(both, "both Ready")
    run.expect("alpha", "Ready", "True")
    run.expect("beta", "Ready", "True")


async def corrupt_manifest(run: Run) -> None:
    await run.h.start_operator()
    await run.h.apply(model_manifest("tiny", run.h.store))
    await run.h.wait_condition("tiny", "Ready", "True", timeout=45)
    w8 = next(v for v in run.h.status("tiny")["variants"] if v["name"] == "w8")
    await run.h.stop_operator()
    run.inject("w8's manifest overwritten with garbage; repaired with modelpress verify")
    key = w8["artifactUri"].removeprefix(f"s3://{run.h.store.bucket}/") + "manifest.json"
    run.h.store.client().put_object(Bucket=run.h.store.bucket, Key=key, Body=b"{garbled")
    await run.h.start_operator()
    await run.h.wait(
        lambda: (
            run.h.condition("tiny", "Compressed", variant="w8").get("reason") == "ArtifactCorrupt"
        ),
        "ArtifactCorrupt",
    )
    if run.h.condition("tiny", "Ready", variant="w4").get("status") != "True":
        run.row.wrong_conditions.append("w4 not Ready while w8 is corrupt")
    from modelpress.cli import main

    with _store_env(run.h):
        main(["verify", w8["artifactUri"], "--repair"])
    await run.until(
        lambda: run.h.condition("tiny", "Compressed", variant="w8").get("reason") == "Published",
        "w8 published again",
    )
    run.reruns.add("-w8-")  # the repair computes it again, by design


async def corrupt_blob(run: Run) -> None:
    await run.h.start_operator()
    await run.h.apply(model_manifest("tiny", run.h.store))
    await run.h.wait_condition("tiny", "Ready", "True", timeout=45)
    w4 = next(v for v in run.h.status("tiny")["variants"] if v["name"] == "w4")
    run.inject("a byte of w4's weights flipped in the bucket; verify --repair, then retry")
    from modelpress.cli import main
    from modelpress.storage import open_store, read_manifest

    with _store_env(run.h):
        manifest = read_manifest(w4["artifactUri"])
        assert manifest is not None
        entry = next(e for e in manifest.files if e.path.endswith(".safetensors"))
        store = open_store(w4["artifactUri"])
        data = bytearray(store.get_bytes(entry.key) or b"")
        data[0] ^= 0xFF
        store.put_bytes(entry.key, bytes(data))
        found = main(["verify", w4["artifactUri"]])
        main(["verify", w4["artifactUri"], "--repair"])
    if found != 1:
        run.row.wrong_conditions.append("verify did not find the flipped byte")
    run.reruns.add("-w4-")
    # The operator trusts what it read for storeCacheSeconds; the retry annotation asks it
    # to look again at once (docs/operator.md, "Repairing an artifact").
    path = f"/apis/modelpress.dev/v1alpha1/namespaces/{NAMESPACE}/compressedmodels/tiny"
    retry = {"metadata": {"annotations": {"modelpress.dev/retry": "repaired"}}}
    async with run.h.cluster.patch(path, json=retry) as response:
        assert response.status < 400
    await run.until(
        lambda: (
            run.h.condition("tiny", "Compressed", variant="w4").get("reason") == "Published"
            and w4["key"] in run.h.store.committed("artifacts")
        ),
        "w4 published again",
    )


async def oom_killed(run: Run) -> None:
    def behaviour(job: dict[str, Any]) -> Outcome:
        outcome = sizes_by_variant(job)
        memory = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        if job["metadata"]["labels"].get("modelpress.dev/variant") == "w4" and memory != "64Gi":
            outcome.failing_attempts = 9
            outcome.message = "exit code 137 (OOMKilled)"
        return outcome

    run.h.kubelet.behaviour = behaviour
    await run.h.start_operator()
    manifest = model_manifest("tiny", run.h.store)
    await run.h.apply(manifest)
    await run.h.wait(
        lambda: run.h.condition("tiny", "Compressed", variant="w4").get("reason") == "OutOfMemory",
        "OutOfMemory",
    )
    run.inject("w4's Job OOMKilled; the user raises spec.compression.memory")
    run.reruns.add("-w4-")  # new settings run it again, by design
    manifest["spec"]["compression"]["memory"] = "64Gi"
    await run.h.apply(manifest)
    await run.until(lambda: run.h.condition("tiny", "Ready").get("status") == "True", "Ready")


async def config_change_while_jobs_run(run: Run) -> None:
    release = await _compress_jobs_held(run)
    before = {j["metadata"]["name"] for j in run.h.jobs("tiny")}
    run.inject("operator restarted with new Job settings and new images (a Helm upgrade)")
    await run.h.stop_operator()
    await run.h.start_operator(
        jobs={"ttlSecondsAfterFinished": 600, "defaultCpu": "3"},
        images={"compressor": "registry.example.com/mp/compressor:0.2.0"},
    )
    await asyncio.sleep(3)
    if {j["metadata"]["name"] for j in run.h.jobs("tiny")} != before:
        run.row.wrong_conditions.append("running Jobs were replaced")
    release.set()
    await run.until(lambda: run.h.condition("tiny", "Ready").get("status") == "True", "Ready")


async def delete_while_another_serves(run: Run) -> None:
    await run.h.start_operator()
    await run.h.apply(model_manifest("alpha", run.h.store, deletionPolicy="Delete"))
    beta = model_manifest("beta", run.h.store)
    beta["spec"]["variants"] = [v for v in beta["spec"]["variants"] if v["name"] == "w8"]
    await run.h.apply(beta)
    for name in ("alpha", "beta"):
        await run.h.wait_condition(name, "Ready", "True", timeout=45)
    shared = run.h.status("beta")["serving"]["artifactUri"]
    run.inject("alpha (Delete) deleted while beta serves the shared w8 artifact")
    own = {v["key"] for v in run.h.status("alpha")["variants"]} - {
        shared.rstrip("/").rsplit("/", 1)[-1]
    }
    await run.h.delete("alpha")
    await run.until(lambda: run.h.model("alpha") is None, "alpha gone")
    if shared.rstrip("/").rsplit("/", 1)[-1] not in run.h.store.committed("artifacts"):
        run.row.artifacts_lost += 1
    run.committed_before -= own  # alpha's own artifacts go by design
    run.expect("beta", "Ready", "True")


async def deployment_edited(run: Run) -> None:
    await run.h.start_operator()
    await run.h.apply(model_manifest("tiny", run.h.store))
    await run.h.wait_condition("tiny", "Ready", "True", timeout=45)
    live = run.h.cluster.get(DEPLOYMENTS, NAMESPACE, "tiny-vllm") or {}
    image = live["spec"]["template"]["spec"]["containers"][0]["image"]
    run.inject("kubectl set image on the serving Deployment")
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/tiny-vllm"
    edit = {"spec": {"template": {"spec": {"containers": [{"name": "vllm", "image": "x/y:1"}]}}}}
    async with run.h.cluster.patch(path, json=edit) as response:
        assert response.status < 400

    def reverted() -> bool:
        now = run.h.cluster.get(DEPLOYMENTS, NAMESPACE, "tiny-vllm") or {}
        return now["spec"]["template"]["spec"]["containers"][0]["image"] == image

    await run.until(reverted, "image put back")


async def status_tampered(run: Run) -> None:
    await run.h.start_operator()
    await run.h.apply(model_manifest("tiny", run.h.store))
    await run.h.wait_condition("tiny", "Ready", "True", timeout=45)
    honest = run.h.status("tiny")
    run.inject("a user with write access to status points every artifactUri elsewhere")
    forged = [dict(v, artifactUri="s3://elsewhere/") for v in honest["variants"]]
    await run.h.patch_status("tiny", {"variants": forged})
    await run.until(lambda: run.h.status("tiny")["variants"] == honest["variants"], "repaired")


async def dead_endpoint(run: Run) -> None:
    from tests.operator.test_operator_problems import blackhole

    with blackhole() as dead:
        data = dict(run.h.store.secret_data())
        data["AWS_ENDPOINT_URL"] = base64.b64encode(dead.encode()).decode()
        await run.h.create(
            "v1/secrets",
            {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
             "metadata": {"name": "dead", "namespace": NAMESPACE}},
        )  # fmt: skip
        await run.h.start_operator(
            storeDeadlineSeconds=1, trust={"storeEndpoints": [run.h.store.endpoint, dead]}
        )
        run.inject("one model's store endpoint accepts connections and never answers")
        stuck = model_manifest("stuck", run.h.store)
        stuck["spec"]["storage"]["secretRef"] = {"name": "dead"}
        await run.h.apply(stuck)
        await run.h.apply(model_manifest("tiny", run.h.store))
        await run.until(
            lambda: (
                run.h.condition("tiny", "Ready").get("status") == "True"
                and run.h.condition("stuck", "SourceReady").get("reason") == "StoreUnavailable"
            ),
            "the other model Ready, this one StoreUnavailable",
        )


# --- faults of the store itself (no cluster needed) ----------------------------------------


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


async def writers_at_every_interleaving(run: Run) -> None:
    """Two writers with different bytes for one artifact, in all six orders of their steps."""
    import itertools

    from modelpress.storage import open_store, read_manifest
    from modelpress.storage.artifacts import commit, stage

    steps = [("a", "stage"), ("a", "commit"), ("b", "stage"), ("b", "commit")]
    orders = [
        o for o in itertools.permutations(steps)
        if all(o.index((w, "stage")) < o.index((w, "commit")) for w in "ab")
    ]  # fmt: skip
    run.inject(f"two writers, one artifact, {len(orders)} interleavings of stage and commit")
    with tempfile.TemporaryDirectory() as scratch, _store_env(run.h):
        dirs = {w: _tree(Path(scratch) / w, {"w.safetensors": w.encode() * (4000 + i)})
                for i, w in enumerate("ab")}  # fmt: skip
        for number, order in enumerate(orders):
            uri = f"{run.h.store.root}artifacts/race-{number}/"
            store = open_store(uri)
            staged, returned = {}, {}
            for writer, step in order:
                if step == "stage":
                    staged[writer] = stage(store, dirs[writer], {"writer": writer})
                else:
                    returned[writer] = commit(store, staged[writer])
            if not returned["a"] == returned["b"] == read_manifest(uri):
                run.row.wrong_conditions.append(f"order {number}: writers disagree")
    await run.until(lambda: True, "every interleaving committed one artifact")


async def s3_dies_mid_upload(run: Run) -> None:
    """The S3 endpoint goes away with a publish's first part in flight, then comes back."""
    from modelpress.storage import open_store, publish, read_manifest
    from modelpress.storage.s3 import S3Store

    run.inject("the store's endpoint refuses connections mid-upload; the publish is retried")
    original = S3Store.upload_file
    cut = {"done": False}

    def upload(self: S3Store, local: Path, key: str, on_bytes: Any = None) -> Any:
        if not cut["done"]:
            cut["done"] = True
            raise ConnectionResetError("the store went away")
        return original(self, local, key, on_bytes)

    S3Store.upload_file = upload  # type: ignore[method-assign]
    uri = f"{run.h.store.root}artifacts/interrupted/"
    try:
        with tempfile.TemporaryDirectory() as scratch, _store_env(run.h):
            model = _tree(Path(scratch), {"a.json": b"{}", "w.safetensors": os.urandom(9000)})
            with contextlib.suppress(Exception):
                publish(uri, model)
            if read_manifest(uri) is not None:
                run.row.wrong_conditions.append("committed although a file failed")
            publish(uri, model)
            if len([i for i in open_store(uri).list() if i.key.startswith("blobs/")]) != 2:
                run.row.wrong_conditions.append("blobs not as the manifest lists")
    finally:
        S3Store.upload_file = original  # type: ignore[method-assign]
    await run.until(lambda: True, "the retry committed it")


FAULTS: dict[str, Callable[[Run], Awaitable[None]]] = {
    "writers-every-interleaving": writers_at_every_interleaving,
    "s3-dies-mid-upload": s3_dies_mid_upload,
    "operator-killed": operator_killed,
    "two-writers": two_models_one_key,
    "corrupt-manifest": corrupt_manifest,
    "corrupt-object": corrupt_blob,
    "oom": oom_killed,
    "upgrade-and-config-change": config_change_while_jobs_run,
    "delete-while-shared": delete_while_another_serves,
    "deployment-edited": deployment_edited,
    "status-tampered": status_tampered,
    "dead-endpoint": dead_endpoint,
}


async def run_fault(name: str, endpoint: str) -> Row:
    row = Row(fault=name, injected="")
    store = make_store(endpoint)
    try:
        async with emulated(store) as harness:
            run = Run(harness, row)
            try:
                await FAULTS[name](run)
            finally:
                run.account()
    except Exception as error:  # a row that fails is reported, and the others still run
        row.error = f"{type(error).__name__}: {str(error)[:300]}"
        row.converged = False
    return row


def isolated_environment(scratch: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("AWS_", "MODELPRESS_", "HF_", "KUBECONFIG")):
            del os.environ[name]
    os.environ.update(
        AWS_CONFIG_FILE=str(scratch / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(scratch / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        HF_HUB_OFFLINE="1",
        MODELPRESS_S3_MAX_ATTEMPTS="2",
    )


def table(rows: list[Row]) -> str:
    head = "| fault | converged | seconds | duplicate Jobs | lost | corrupted | wrong conditions |"
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        wrong = "; ".join(r.wrong_conditions) or (r.error or "0")
        lines.append(
            f"| {r.fault} | {'yes' if r.converged else 'NO'} | {r.seconds} | "
            f"{r.duplicate_jobs} | {r.artifacts_lost} | {r.artifacts_corrupted} | {wrong} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--only", help="comma-separated faults: " + ", ".join(FAULTS))
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(FAULTS)
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        parser.error(f"unknown faults {unknown}: choose from {', '.join(FAULTS)}")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the S3 server's request log
    with tempfile.TemporaryDirectory() as scratch:
        isolated_environment(Path(scratch))
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        rows = []
        for name in names:
            print(f"fault {name} ...", file=sys.stderr, flush=True)
            rows.append(asyncio.run(run_fault(name, f"http://{host}:{port}")))
        server.stop()
    print(table(rows))
    for row in rows:
        if row.injected:
            print(f"- {row.fault}: {row.injected}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {"machine": platform.platform(), "rows": [asdict(r) for r in rows]}
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    clean = all(
        r.converged and not (r.duplicate_jobs or r.artifacts_lost or r.artifacts_corrupted)
        and not r.wrong_conditions for r in rows
    )  # fmt: skip
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
