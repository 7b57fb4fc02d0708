"""A stand-in for the kubelet and the Job and Deployment controllers of the emulated cluster.

It runs what the operator asks for, through the API like the real controllers:

- a fetch Job runs its real container command (`modelpress fetch ...`) as a local
  process, with its Secret volumes written to a temporary directory and the
  container paths in its arguments and environment mapped onto local ones;
- a compression Job does what `modelpress compress` does to the store without
  running a model: it publishes a small real artifact (config.json, a weights
  file, manifest with sha256s) at the Job's --out, whose metadata carries the
  metrics the test chooses per variant. Real compression needs minutes of CPU per
  variant; the contract under test is the operator's, not the engine's;
- a failing attempt leaves a Failed pod with a termination message, as a real one
  would, and the Job fails after backoffLimit + 1 attempts;
- a LeaderWorkerSet's groups become ready, as LWS's controller reports them;
- a JobSet gets its Job (labelled and owned as JobSet's controller does it), which then
  runs as any Job; when that Job fails the JobSet restarts it (a new Job) up to
  maxRestarts, then fails, and when it completes the JobSet completes;
- a Deployment becomes available (all replicas ready) once its pods would run, and
  its newest pod is there with the timings a kubelet reports: the artifact pull
  (init container) took PULL_SECONDS and vLLM's load LOAD_SECONDS more.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.operator.cluster import (
    DEPLOYMENTS,
    JOB_SETS,
    JOBS,
    LEADER_WORKER_SETS,
    PODS,
    SECRETS,
    Cluster,
)

COMPONENT = "modelpress.dev/component"
JOBSET_NAME = "jobset.sigs.k8s.io/jobset-name"
VARIANT = "modelpress.dev/variant"
PULL_SECONDS = 2
LOAD_SECONDS = 7


@dataclass
class Outcome:
    """What a Job's pod does when the stand-in runs it."""

    failing_attempts: int = 0
    """Attempts that fail before one succeeds; more than backoffLimit fails the Job."""
    message: str = "exit code 1"
    """Termination message of a failing attempt."""
    metrics: dict[str, float] | None = None
    """Compression Jobs: the manifest's metrics (default: 2 % worse than the base)."""
    size_ratio: float = 0.5
    """Compression Jobs: artifact weights relative to the base model's."""
    hold: asyncio.Event | None = None
    """When given, the pod keeps running until the event is set."""
    retry: asyncio.Event | None = None
    """When given, each retry waits until the event is set: the Job controller's backoff
    (10 s and more on a real cluster), held until a test has seen the retrying state."""


Behaviour = Callable[[dict[str, Any]], Outcome]


def default_behaviour(job: dict[str, Any]) -> Outcome:
    return Outcome()


@dataclass
class Kubelet:
    cluster: Cluster
    behaviour: Behaviour = default_behaviour
    deployments_ready: bool = True
    runs: list[str] = field(default_factory=list)
    """Names of the Jobs whose pods were started, in order."""
    _seen: set[str] = field(default_factory=set)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kubelet-")))

    async def run(self) -> None:
        """Reconcile Jobs and Deployments until cancelled."""
        try:
            while True:
                for job in self.cluster.all(JOBS):
                    key = f"{job['metadata']['namespace']}/{job['metadata']['name']}/{job['metadata']['uid']}"
                    if key not in self._seen:
                        self._seen.add(key)
                        self._tasks.append(asyncio.create_task(self._run_job(job)))
                for gang in self.cluster.all(JOB_SETS):
                    await self._run_job_set(gang)
                if self.deployments_ready:
                    for deployment in self.cluster.all(DEPLOYMENTS):
                        await self._make_available(deployment)
                    for group_set in self.cluster.all(LEADER_WORKER_SETS):
                        await self._groups_ready(group_set)
                await asyncio.sleep(0.05)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            shutil.rmtree(self._root, ignore_errors=True)

    # --- the API calls a controller makes ------------------------------------------------------

    async def _patch_status(self, kind: str, obj: dict[str, Any], status: dict[str, Any]) -> None:
        metadata = obj["metadata"]
        path = f"{_collection(kind, metadata['namespace'])}/{metadata['name']}/status"
        async with self.cluster.patch(path, json={"status": status}) as response:
            if response.status == 404:
                return  # deleted meanwhile
            assert response.status < 400, await response.text()

    async def _make_available(self, deployment: dict[str, Any]) -> None:
        metadata = deployment["metadata"]
        status = deployment.get("status") or {}
        generation = metadata.get("generation", 1)
        if status.get("observedGeneration") == generation:
            return
        replicas = deployment["spec"].get("replicas", 1)
        await self._serving_pod(deployment, generation)
        await self._patch_status(
            DEPLOYMENTS,
            deployment,
            {
                "observedGeneration": generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                ],
            },
        )

    async def _groups_ready(self, group_set: dict[str, Any]) -> None:
        """What LWS's controller reports once every pod of every group is ready."""
        replicas = group_set["spec"].get("replicas", 1)
        status = group_set.get("status") or {}
        if status.get("readyReplicas") == replicas and status.get("updatedReplicas") == replicas:
            return
        ready = {"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas}
        ready["conditions"] = [{"type": "Available", "status": "True", "reason": "AllGroupsReady"}]
        await self._patch_status(LEADER_WORKER_SETS, group_set, ready)

    async def _run_job_set(self, gang: dict[str, Any]) -> None:
        """What JobSet's controller does for a gang of one replicated Job."""
        metadata, status = gang["metadata"], gang.get("status") or {}
        if any(c.get("status") == "True" for c in status.get("conditions") or []):
            return  # Completed or Failed
        (replicated,) = gang["spec"]["replicatedJobs"]
        job_name = f"{metadata['name']}-{replicated['name']}-0"
        job = self.cluster.get(JOBS, metadata["namespace"], job_name)
        if job is None:
            await self._create_gang_job(gang, replicated, job_name)
            return
        conditions = {c["type"]: c for c in (job.get("status") or {}).get("conditions") or []}
        restarts = status.get("restarts", 0)
        if "Complete" in conditions:
            await self._patch_status(JOB_SETS, gang, {
                "restarts": restarts,
                "conditions": [{"type": "Completed", "status": "True", "reason": "AllJobsCompleted"}],
            })  # fmt: skip
        elif "Failed" in conditions:
            if restarts < gang["spec"]["failurePolicy"].get("maxRestarts", 0):
                await self._patch_status(JOB_SETS, gang, {"restarts": restarts + 1})
                path = f"{_collection(JOBS, metadata['namespace'])}/{job_name}"
                async with self.cluster.delete(path) as response:
                    assert response.status < 400 or response.status == 404
                return
            await self._patch_status(JOB_SETS, gang, {
                "restarts": restarts,
                "conditions": [{
                    "type": "Failed", "status": "True", "reason": "FailedJobs",
                    "message": "jobset failed due to reaching max number of restarts",
                }],
            })  # fmt: skip

    async def _create_gang_job(
        self, gang: dict[str, Any], replicated: dict[str, Any], name: str
    ) -> None:
        metadata = gang["metadata"]
        template = replicated["template"]
        labels = {**template["metadata"]["labels"], JOBSET_NAME: metadata["name"]}
        spec = json.loads(json.dumps(template["spec"]))
        spec["template"]["spec"]["subdomain"] = metadata["name"]
        spec["template"]["metadata"]["labels"] = {
            **spec["template"]["metadata"].get("labels", {}), JOBSET_NAME: metadata["name"]
        }  # fmt: skip
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": metadata["namespace"],
                "labels": labels,
                "ownerReferences": [{
                    "apiVersion": gang["apiVersion"], "kind": "JobSet", "name": metadata["name"],
                    "uid": metadata["uid"], "controller": True, "blockOwnerDeletion": True,
                }],
            },
            "spec": spec,
        }  # fmt: skip
        async with self.cluster.post(
            _collection(JOBS, metadata["namespace"]), json=job
        ) as response:
            assert response.status < 400 or response.status == 409, await response.text()

    async def _serving_pod(self, deployment: dict[str, Any], generation: int) -> None:
        """The pod of this generation, started and ready, with a kubelet's timestamps."""
        from datetime import UTC, datetime, timedelta

        metadata = deployment["metadata"]
        template = deployment["spec"]["template"]["metadata"]
        created = datetime.now(UTC).replace(microsecond=0)

        def at(seconds: int) -> str:
            return (created + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")

        pulled, ready = at(PULL_SECONDS), at(PULL_SECONDS + LOAD_SECONDS)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{metadata['name']}-{generation}",
                "namespace": metadata["namespace"],
                "labels": dict(template.get("labels") or {}),
            },
            "spec": deployment["spec"]["template"]["spec"],
            "status": {
                "phase": "Running",
                "initContainerStatuses": [
                    {
                        "name": "pull",
                        "state": {"terminated": {"startedAt": at(0), "finishedAt": pulled}},
                    }
                ],
                "containerStatuses": [
                    {"name": "vllm", "state": {"running": {"startedAt": pulled}}}
                ],
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready}],
            },
        }
        async with self.cluster.post(
            _collection(PODS, metadata["namespace"]), json=pod
        ) as response:
            assert response.status < 400 or response.status == 409, await response.text()

    async def _failed_pod(self, job: dict[str, Any], attempt: int, message: str) -> None:
        metadata = job["metadata"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{metadata['name']}-{metadata['uid'][:5]}-{attempt}",  # unique, as a pod's suffix
                "namespace": metadata["namespace"],
                "labels": {"job-name": metadata["name"], **(metadata.get("labels") or {})},
            },
            "spec": job["spec"]["template"]["spec"],
            "status": {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": job["spec"]["template"]["spec"]["containers"][0]["name"],
                        "state": {
                            "terminated": {"exitCode": 1, "reason": "Error", "message": message}
                        },
                    }
                ],
            },
        }
        async with self.cluster.post(
            _collection(PODS, metadata["namespace"]), json=pod
        ) as response:
            assert response.status < 400, await response.text()

    # --- running a Job's pods ------------------------------------------------------------------

    async def _run_job(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        outcome = self.behaviour(job)
        limit = job["spec"].get("backoffLimit", 6)
        await self._patch_status(JOBS, job, {"active": 1, "startTime": "2026-01-01T00:00:00Z"})
        self.runs.append(name)
        for attempt in range(limit + 1):
            if outcome.hold is not None:
                await outcome.hold.wait()
            if attempt > 0 and outcome.retry is not None:
                await outcome.retry.wait()
            if self.cluster.get(JOBS, job["metadata"]["namespace"], name) is None:
                return  # deleted while running
            if attempt < outcome.failing_attempts:
                error: str | None = outcome.message
            else:
                error = await self._execute(job, outcome)
            if error is None:
                await self._patch_status(
                    JOBS,
                    job,
                    {
                        "active": 0,
                        "succeeded": 1,
                        "failed": attempt,
                        "conditions": [
                            {"type": "SuccessCriteriaMet", "status": "True"},
                            {"type": "Complete", "status": "True"},
                        ],
                    },
                )
                return
            await self._failed_pod(job, attempt, error)
            last = attempt == limit
            status: dict[str, Any] = {"failed": attempt + 1, "active": 0 if last else 1}
            if last:
                status["conditions"] = [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ]
            await self._patch_status(JOBS, job, status)
            await asyncio.sleep(0.05)

    async def _execute(self, job: dict[str, Any], outcome: Outcome) -> str | None:
        """Run the pod once; None on success, else its termination message."""
        container = job["spec"]["template"]["spec"]["containers"][0]
        workdir = Path(tempfile.mkdtemp(dir=self._root))
        mounts = self._mount(job, workdir)
        args = [_local(arg, mounts) for arg in container["args"]]
        if container.get("command") == ["torchrun"]:
            # A distributed distillation: rank 0's `modelpress` publishes (the helpers'
            # share of the training has no effect on the store).
            args = args[args.index("--no-python") + 2 :]
        env = {e["name"]: _local(e["value"], mounts) for e in container.get("env") or []}
        if job["metadata"]["labels"].get(COMPONENT) == "compress":
            return await asyncio.to_thread(_publish_variant, args, env, outcome)
        return await _run_command(args, env)

    def _mount(self, job: dict[str, Any], workdir: Path) -> dict[str, str]:
        """Container paths -> local directories, with Secret volumes written as files."""
        spec = job["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        mapping: dict[str, str] = {}
        container = spec["containers"][0]
        for mount in container.get("volumeMounts") or []:
            local = workdir / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            volume = volumes[mount["name"]]
            if "secret" in volume:
                secret = self.cluster.get(
                    SECRETS, job["metadata"]["namespace"], volume["secret"]["secretName"]
                )
                assert secret is not None, f"Secret {volume['secret']['secretName']} is missing"
                items = volume["secret"].get("items")
                for key, value in (secret.get("data") or {}).items():
                    path = key
                    if items is not None:
                        chosen = [i for i in items if i["key"] == key]
                        if not chosen:
                            continue
                        path = chosen[0]["path"]
                    (local / path).write_bytes(base64.b64decode(value))
            mapping[mount["mountPath"]] = str(local)
        return mapping


def _collection(resource: str, namespace: str) -> str:
    group_version, plural = resource.rsplit("/", 1)
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}"


def _local(value: str, mounts: dict[str, str]) -> str:
    for container_path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if value == container_path or value.startswith(container_path + "/"):
            return local + value[len(container_path) :]
    return value


async def _run_command(args: list[str], env: dict[str, str]) -> str | None:
    """`modelpress ARGS` as a process, with the pod's environment over a clean one."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODELPRESS_", "HF_"))}
    base.update(
        {
            "AWS_EC2_METADATA_DISABLED": "true",
            "HF_HUB_OFFLINE": "1",
            "MODELPRESS_S3_MAX_ATTEMPTS": "2",
            "PYTHONPATH": os.pathsep.join(sys.path),
        }
    )
    base.update(env)
    for directory in ("HOME", "TMPDIR"):
        if directory in base:
            Path(base[directory]).mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from modelpress.cli import main; sys.exit(main())",
        *args,
        env=base,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    if process.returncode == 0:
        return None
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit code {process.returncode}"


def _argument(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _publish_variant(args: list[str], env: dict[str, str], outcome: Outcome) -> str | None:
    """What `modelpress compress` leaves in the store, minus the model work."""
    from modelpress.storage import Credentials, open_store, publish, read_manifest

    assert args[0] == "compress"
    base, out = _argument(args, "--base"), _argument(args, "--out")
    variant = json.loads(_argument(args, "--variant"))
    evaluation = json.loads(_argument(args, "--evaluation"))
    credentials_dir = env.get("MODELPRESS_STORAGE_CREDENTIALS_DIR")
    credentials = Credentials.from_directory(credentials_dir) if credentials_dir else None
    base_manifest = read_manifest(base, credentials=credentials)
    if base_manifest is None:
        return json.dumps({"error": f"no base model at {base}", "reason": "BaseMissing"})
    config = json.loads(open_store(base, credentials).get_bytes("config.json") or b"{}")
    weights = sum(f.bytes for f in base_manifest.files if f.path.endswith(".safetensors"))
    size = max(1, int(weights * outcome.size_ratio))
    metrics = outcome.metrics or {
        "perplexity": 10.2,
        "basePerplexity": 10.0,
        "perplexityIncrease": 0.02,
        "agreement": 0.97,
    }
    parameters = 134515008
    with tempfile.TemporaryDirectory() as staging:
        root = Path(staging)
        (root / "config.json").write_text(json.dumps(config))
        (root / "model.safetensors").write_bytes(os.urandom(size))
        publish(
            out,
            root,
            {
                "kind": "variant",
                "parameters": parameters,
                "weightsBytes": size,
                "bitsPerWeight": round(size * 8 / parameters, 4),
                "modelConfig": config,
                "recipe": variant,
                "evaluation": evaluation,
                "metrics": metrics,
            },
            credentials=credentials,
        )
    return None
