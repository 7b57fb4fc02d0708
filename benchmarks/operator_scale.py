"""How fast the operator brings many CompressedModels to Ready, and how much memory it needs.

An emulated API server (kmock, tests/operator/cluster.py) and a stand-in kubelet
run in this process; `modelpress operator` runs as a separate process, exactly as
in a cluster, so its peak resident memory is its own. Every model has two
variants: `w8` (the same recipe everywhere, so one artifact serves all) and `w4`
(a per-model calibration size, so one artifact each). The stand-in completes Jobs
at once: fetch Jobs run the real `fetch_source` against a file:// store (the
first publishes the base model, the others find its record); compression Jobs
publish a small real artifact with metrics. Deployments become available at once.

The clock starts when the operator is started with every model already applied
(the worst case: a restart on a busy cluster) and stops when all are Ready.

    python benchmarks/operator_scale.py --objects 1000 --json results/operator_scale.json
    python benchmarks/operator_scale.py --objects 1000 3000 10000 \
        --json results/operator_scale.json --plot docs/operator-scale.png

With several counts it runs each in turn (a fresh emulator and operator each),
prints a table, and plots time to Ready and peak memory against the count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.operator.cluster import (  # noqa: E402
    DEPLOYMENTS,
    GROUP_VERSION_PLURAL,
    JOBS,
    kubeconfig,
    running_cluster,
)

NAMESPACE = "bench"
SMOLLM2_CONFIG = ROOT / "tests" / "sizing" / "configs" / "SmolLM2-135M.json"


def model(name: str, index: int, root: Path) -> dict[str, Any]:
    return {
        "apiVersion": "modelpress.dev/v1alpha1",
        "kind": "CompressedModel",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "source": {"uri": f"file://{root}/base/"},
            "storage": {"uri": f"file://{root}/store/"},
            "calibration": {"dataset": {"uri": f"file://{root}/calib.txt"}, "samples": index + 1},
            "variants": [
                {"name": "w8", "quantize": {"scheme": "W8A16", "algorithm": "rtn"}},
                {
                    "name": "w4",
                    "quantize": {"scheme": "W4A16", "algorithm": "gptq", "groupSize": 64},
                },
            ],
            "evaluation": {"dataset": {"uri": f"file://{root}/eval.txt"}},
            "serving": {"maxModelLen": 2048, "maxNumSeqs": 4},
        },
    }


class StandIn:
    """Completes Jobs and Deployments as soon as the emulator reports them."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self.done: set[tuple[str, str]] = set()
        cluster.listeners.append(self._notice)

    def _notice(self, resource: str, namespace: str | None, name: str | None) -> None:
        if resource in (JOBS, DEPLOYMENTS) and namespace and name:
            self.queue.put_nowait((resource, namespace, name))

    async def run(self, workers: int = 8) -> None:
        await asyncio.gather(*(self._work() for _ in range(workers)))

    async def _work(self) -> None:
        while True:
            resource, namespace, name = await self.queue.get()
            obj = self.cluster.get(resource, namespace, name)
            if obj is None:
                continue
            try:
                if resource == JOBS:
                    await self._job(obj)
                else:
                    await self._deployment(obj)
            except Exception as error:
                print(f"stand-in: {resource} {name}: {error}", file=sys.stderr)

    async def _patch(self, resource: str, obj: dict[str, Any], status: dict[str, Any]) -> None:
        group_version, plural = resource.rsplit("/", 1)
        metadata = obj["metadata"]
        path = f"/apis/{group_version}/namespaces/{metadata['namespace']}/{plural}/{metadata['name']}/status"
        async with self.cluster.patch(path, json={"status": status}) as response:
            await response.read()

    async def _job(self, job: dict[str, Any]) -> None:
        key = (job["metadata"]["namespace"], job["metadata"]["uid"])
        if key in self.done or (job.get("status") or {}).get("conditions"):
            return
        self.done.add(key)
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        await asyncio.to_thread(run_job, args)
        complete = [{"type": "Complete", "status": "True"}]
        await self._patch(JOBS, job, {"succeeded": 1, "conditions": complete})

    async def _deployment(self, deployment: dict[str, Any]) -> None:
        generation = deployment["metadata"].get("generation", 1)
        if (deployment.get("status") or {}).get("observedGeneration") == generation:
            return
        replicas = deployment["spec"].get("replicas", 1)
        await self._patch(
            DEPLOYMENTS,
            deployment,
            {
                "observedGeneration": generation,
                "replicas": replicas,
                "readyReplicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
            },
        )


def _argument(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def run_job(args: list[str]) -> None:
    """What the Job's container leaves in the store."""
    from modelpress.sources import fetch_source
    from modelpress.storage import publish, read_manifest

    if args[0] == "fetch":
        fetch_source(json.loads(_argument(args, "--source")), _argument(args, "--store"))
        return
    out = _argument(args, "--out")
    if read_manifest(out) is not None:
        return
    config = json.loads(SMOLLM2_CONFIG.read_text())
    with tempfile.TemporaryDirectory() as staging:
        directory = Path(staging)
        (directory / "config.json").write_text(json.dumps(config))
        (directory / "model.safetensors").write_bytes(b"\0" * 4096)
        metrics = {"perplexity": 10.2, "basePerplexity": 10.0, "perplexityIncrease": 0.02}
        publish(out, directory, {"weightsBytes": 4096, "modelConfig": config, "metrics": metrics})


class ReadyCount:
    """Models whose Ready condition is True, kept up to date from the emulator's writes
    (re-reading every model twice a second would take the cores being measured)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.ready: set[tuple[str, str]] = set()
        cluster.listeners.append(self._notice)

    def _notice(self, resource: str, namespace: str | None, name: str | None) -> None:
        if resource != GROUP_VERSION_PLURAL or not namespace or not name:
            return
        obj = self.cluster.get(resource, namespace, name)
        conditions = ((obj or {}).get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            self.ready.add((namespace, name))
        else:
            self.ready.discard((namespace, name))

    def __len__(self) -> int:
        return len(self.ready)


async def sample_memory(pid: int, peak: list[int], stop: asyncio.Event) -> None:
    import psutil

    process = psutil.Process(pid)
    while not stop.is_set():
        with contextlib.suppress(psutil.Error):
            peak[0] = max(peak[0], process.memory_info().rss)
        await asyncio.sleep(0.1)


async def benchmark(
    objects: int, workers: int, timeout: float, root: Path, profile: str | None = None
) -> dict[str, Any]:
    (root / "base").mkdir(parents=True)
    (root / "base" / "config.json").write_bytes(SMOLLM2_CONFIG.read_bytes())
    (root / "base" / "model.safetensors").write_bytes(os.urandom(64 * 1024))
    (root / "eval.txt").write_text("held-out text")
    (root / "calib.txt").write_text("calibration text")
    # One machine: its own file:// store, read with this process's identity.
    (root / "operator.yaml").write_text(
        f"workerLimit: {workers}\n"
        "trust: {allowFileStores: true, ambientCredentialsNamespaces: [bench]}\n"
    )

    async with running_cluster(admission=False) as (cluster, url):
        stand_in = StandIn(cluster)
        ready_models = ReadyCount(cluster)
        stand_in_task = asyncio.create_task(stand_in.run())
        collection = f"/apis/modelpress.dev/v1alpha1/namespaces/{NAMESPACE}/compressedmodels"
        for index in range(objects):
            async with cluster.post(
                collection, json=model(f"m{index:05d}", index, root)
            ) as response:
                if response.status >= 400:
                    raise RuntimeError(await response.text())

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODELPRESS_"))}
        env["KUBECONFIG"] = str(kubeconfig(root / "kubeconfig", url))
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "operator"), env.get("PYTHONPATH", "")])
        log = (root / "operator.log").open("w")
        started = time.monotonic()
        entry = root / "entry.py"
        entry.write_text("import sys\nfrom modelpress.cli import main\nsys.exit(main())\n")
        command = [sys.executable, str(entry)]
        if profile:
            command = [sys.executable, "-m", "cProfile", "-o", profile, str(entry)]
        process = subprocess.Popen(
            [*command, "operator", "--config", str(root / "operator.yaml"), "--all-namespaces",
             "--standalone", *(["--verbose"] if os.environ.get("BENCH_VERBOSE") else [])],
            env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
        )  # fmt: skip
        peak = [0]
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_memory(process.pid, peak, stop))
        ready = 0
        progress_at = started
        requests: dict[str, int] = {}
        try:
            while True:
                ready = len(ready_models)
                now = time.monotonic()
                if ready == objects:
                    break
                if process.poll() is not None:
                    raise RuntimeError(
                        f"the operator exited with {process.returncode}; see {log.name}"
                    )
                if now - started > timeout:
                    raise TimeoutError(f"only {ready}/{objects} Ready after {timeout:.0f} s")
                if now - progress_at >= 5:
                    print(f"  {now - started:5.1f} s: {ready}/{objects} Ready", file=sys.stderr)
                    progress_at = now
                _count(cluster, requests)
                await asyncio.sleep(0.5)
            converged = time.monotonic() - started
            _count(cluster, requests)
        finally:
            stop.set()
            await sampler
            cpu = _cpu_seconds(process.pid)
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
            stand_in_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stand_in_task
        jobs = len(cluster.all(JOBS, NAMESPACE))
        deployments = len(cluster.all(DEPLOYMENTS, NAMESPACE))
    writes = _writes(requests)
    return {
        "objects": objects,
        "variantsPerObject": 2,
        "workerLimit": workers,
        "convergeSeconds": round(converged, 2),
        "operatorPeakRssMiB": round(peak[0] / 2**20, 1),
        "operatorCpuSeconds": cpu,
        "operatorCpuMsPerModel": round(1000 * cpu / objects, 2) if cpu is not None else None,
        "apiWritesPerModel": round(writes / objects, 2),
        "apiWritesPerSecond": round(writes / converged, 1),
        "emulatorAndStandInCpuSeconds": round(_own_cpu_seconds(), 1),
        "ready": ready,
        "operatorRequests": dict(sorted(requests.items(), key=lambda kv: -kv[1])),
        "jobs": jobs,
        "deployments": deployments,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def _die_with_parent() -> None:
    """In the child: a benchmark killed mid-run takes its operator with it (Linux)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


WRITES = ("POST", "PATCH", "PUT", "DELETE")


def _writes(requests: dict[str, int]) -> int:
    return sum(n for key, n in requests.items() if key.split(" ", 1)[0] in WRITES)


def _count(cluster: Any, counts: dict[str, int]) -> None:
    """Tally the operator's requests by method and resource, then forget them."""
    for seen in cluster.seen:
        if "kmock" in seen.agent:
            continue
        parts = seen.path.strip("/").split("/")
        if "namespaces" in parts[:-1] and parts.index("namespaces") + 2 < len(parts):
            rest = parts[parts.index("namespaces") + 2 :]
            kind = rest[0] + ("/" + rest[2] if len(rest) > 2 else "")
        else:
            kind = parts[-1]
        key = f"{seen.method} {kind}"
        counts[key] = counts.get(key, 0) + 1
    cluster.seen.clear()


def _own_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_seconds(pid: int) -> float | None:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return round(times.user + times.system, 1)


def table(results: list[dict[str, Any]]) -> str:
    head = ("models", "Ready after s", "peak RSS MiB", "CPU s", "CPU ms/model", "writes/model",
            "writes/s")  # fmt: skip
    rows = [
        (
            r["objects"],
            r["convergeSeconds"],
            r["operatorPeakRssMiB"],
            r["operatorCpuSeconds"],
            r["operatorCpuMsPerModel"],
            r["apiWritesPerModel"],
            r["apiWritesPerSecond"],
        )
        for r in results
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], out: str) -> None:
    """Time to Ready and peak memory against the number of models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [r["objects"] for r in results]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(counts, [r["convergeSeconds"] for r in results], "o-")
    left.set(xlabel="models (2 variants each)", ylabel="seconds until all Ready",
             title="Time to Ready")  # fmt: skip
    right.plot(counts, [r["operatorPeakRssMiB"] for r in results], "o-", color="tab:orange")
    right.set(xlabel="models (2 variants each)", ylabel="MiB", title="Operator peak RSS")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.set_ylim(bottom=0)
    figure.suptitle(f"modelpress operator on {os.cpu_count()} cores", fontsize=10)
    figure.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--objects", type=int, nargs="+", default=[1000], help="CompressedModels to apply"
    )
    parser.add_argument("--workers", type=int, default=20, help="the operator's workerLimit")
    parser.add_argument(
        "--timeout", type=float, default=900, help="give up a run after this many seconds"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON here")
    parser.add_argument("--plot", metavar="PNG", help="plot time and memory against the count")
    parser.add_argument("--log", metavar="FILE", help="keep the last operator's log here")
    parser.add_argument(
        "--profile", metavar="FILE", help="profile the operator (cProfile) into FILE"
    )
    args = parser.parse_args()
    if min(args.objects) < 1:
        parser.error("--objects must be at least 1")
    results = []
    for objects in args.objects:
        print(f"operator_scale: {objects} models", file=sys.stderr)
        result = run_once(objects, args)
        if result is None:
            return 1
        results.append(result)
    print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    print(table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        payload = results[0] if len(results) == 1 else results
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    if args.plot:
        plot(results, args.plot)
    return 0


def run_once(objects: int, args: argparse.Namespace) -> dict[str, Any] | None:
    root = Path(tempfile.mkdtemp(prefix="modelpress-scale-"))
    try:
        return asyncio.run(benchmark(objects, args.workers, args.timeout, root, args.profile))
    except (RuntimeError, TimeoutError) as error:
        log = root / "operator.log"
        tail = log.read_text(errors="replace").splitlines()[-30:] if log.exists() else []
        print("\n".join(["the operator's last log lines:", *tail]), file=sys.stderr)
        print(f"operator_scale: {error}", file=sys.stderr)
        return None
    finally:
        if args.log and (root / "operator.log").exists():
            shutil.copy(root / "operator.log", args.log)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
