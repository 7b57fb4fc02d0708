"""Publish and fetch throughput: modelpress (sha256 on every byte) versus raw boto3.

Both go to the same local S3 server (moto, in its own process) with the same
client and transfer settings; runs alternate between the two so drift in the
machine's load hits both alike. The artifact is several files like a sharded
checkpoint. Prints a table and, with --json, writes every measurement.

    python benchmarks/storage.py --json results/storage.json
    python benchmarks/storage.py --size-mib 64 --runs 2      # a quick look
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
# Shards of a checkpoint, as fractions of the total, plus the small files beside them.
SHARD_FRACTIONS = (0.4, 0.3, 0.2, 0.1)
SMALL_FILES = {"config.json": 700, "tokenizer.json": 2 * MIB, "tokenizer_config.json": 4000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="artifact size (default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="runs per method (default 3)")
    parser.add_argument("--json", metavar="OUT", help="write all measurements to this file")
    parser.add_argument("--work-dir", help="where to write the test files (default: temp dir)")
    args = parser.parse_args(argv)
    if args.size_mib < 8:
        parser.error("--size-mib must be at least 8")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """A moto S3 server in its own process (so it does not share the client's GIL)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).read()
            return process, endpoint
        except OSError:
            if process.poll() is not None:
                raise SystemExit("the moto server exited at start-up") from None
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the moto server did not start within 60 s")


def make_artifact(root: Path, size_mib: int) -> dict[str, int]:
    """Random shards adding up to `size_mib` (incompressible, like weights)."""
    root.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = dict(SMALL_FILES)
    shard_total = size_mib * MIB - sum(SMALL_FILES.values())
    count = len(SHARD_FRACTIONS)
    for index, fraction in enumerate(SHARD_FRACTIONS, start=1):
        sizes[f"model-{index:05d}-of-{count:05d}.safetensors"] = int(shard_total * fraction)
    block = os.urandom(8 * MIB)
    for name, size in sizes.items():
        with open(root / name, "wb") as handle:
            remaining = size
            while remaining:
                # Rotate the block so no two 8 MiB stretches are identical.
                block = block[1:] + block[:1]
                piece = block[: min(remaining, len(block))]
                handle.write(piece)
                remaining -= len(piece)
    return sizes


def timed(action: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) spent in `action`."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    action()
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return wall, usage.ru_utime + usage.ru_stime - cpu_before


class Modelpress:
    """publish() and fetch(): sha256 of every byte, manifest written last, verified download."""

    name = "modelpress"

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def upload(self, source: Path, run: int) -> None:
        from modelpress.storage import publish

        publish(f"s3://{self.bucket}/modelpress/run-{run}/", source, {"benchmark": True})

    def download(self, dest: Path, run: int) -> None:
        from modelpress.storage import fetch

        fetch(f"s3://{self.bucket}/modelpress/run-{run}/", dest)

    def clean(self, run: int) -> None:
        from modelpress.storage import delete_artifact

        delete_artifact(f"s3://{self.bucket}/modelpress/run-{run}/")


class RawBoto3:
    """upload_file() and download_file() per file, with the same transfer settings."""

    def __init__(self, name: str, client: Any, config: Any, bucket: str) -> None:
        self.name = name
        self.client = client
        self.config = config
        self.bucket = bucket
        self._names: dict[int, list[str]] = {}

    def _key(self, run: int, name: str) -> str:
        return f"{self.name}/run-{run}/{name}"

    def upload(self, source: Path, run: int) -> None:
        self._names[run] = sorted(path.name for path in source.iterdir())
        for name in self._names[run]:
            self.client.upload_file(
                str(source / name), self.bucket, self._key(run, name), Config=self.config
            )

    def download(self, dest: Path, run: int) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for name in self._names[run]:
            self.client.download_file(
                self.bucket, self._key(run, name), str(dest / name), Config=self.config
            )

    def clean(self, run: int) -> None:
        objects = [{"Key": self._key(run, name)} for name in self._names.pop(run)]
        self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects})


def measure(methods: list[Any], source: Path, work: Path, run: int) -> list[dict[str, Any]]:
    """One run: all uploads back to back, then all downloads; the order rotates by run."""
    shift = run % len(methods)
    order = methods[shift:] + methods[:shift]
    results = {method.name: {"method": method.name, "run": run} for method in order}
    for method in order:
        wall, cpu = timed(functools.partial(method.upload, source, run))
        results[method.name].update(upload_s=wall, upload_cpu_s=cpu)
    for method in order:
        dest = work / f"dest-{method.name}"
        wall, cpu = timed(functools.partial(method.download, dest, run))
        results[method.name].update(download_s=wall, download_cpu_s=cpu)
        shutil.rmtree(dest)
        method.clean(run)
    return [results[method.name] for method in methods]


BASELINES = {
    "boto3": "plain boto3 client (endpoint, region, path-style only) + the same TransferConfig",
    "boto3-mpconfig": "boto3 client built with modelpress's client config + the same TransferConfig",
}
PHASES = ("upload", "download", "round_trip")


def _seconds(run: dict[str, Any], phase: str) -> float:
    if phase == "round_trip":
        return float(run["upload_s"] + run["download_s"])
    return float(run[f"{phase}_s"])


def summarize(runs: list[dict[str, Any]], total_bytes: int) -> dict[str, Any]:
    """Median throughput and client CPU per method, and modelpress's ratio to each baseline:
    the median over runs of (baseline time / modelpress time), both timed back to back."""
    summary: dict[str, Any] = {"methods": {}, "ratio": {}}
    for method in ("modelpress", *BASELINES):
        mine = [run for run in runs if run["method"] == method]
        entry: dict[str, float] = {}
        for phase in PHASES:
            moved = (2 if phase == "round_trip" else 1) * total_bytes / MIB
            entry[f"{phase}_mib_s"] = moved / statistics.median(_seconds(r, phase) for r in mine)
        for phase in ("upload", "download"):
            entry[f"{phase}_cpu_s"] = statistics.median(run[f"{phase}_cpu_s"] for run in mine)
        summary["methods"][method] = entry
    by_run = {(run["method"], run["run"]): run for run in runs}
    for baseline in BASELINES:
        summary["ratio"][baseline] = {
            phase: statistics.median(
                _seconds(by_run[(baseline, run)], phase)
                / _seconds(by_run[("modelpress", run)], phase)
                for method, run in by_run
                if method == "modelpress"
            )
            for phase in PHASES
        }
    return summary


def print_table(summary: dict[str, Any], total_bytes: int, runs: int) -> None:
    methods = summary["methods"]
    print(f"\nartifact {total_bytes / MIB:.0f} MiB, {runs} run(s), medians; throughput in MiB/s")
    header = f"{'phase':<11}{'modelpress':>11}"
    for baseline in BASELINES:
        header += f"{baseline:>16}{'ratio':>7}"
    print(header)
    for phase in PHASES:
        line = f"{phase:<11}{methods['modelpress'][f'{phase}_mib_s']:>11.1f}"
        for baseline in BASELINES:
            line += f"{methods[baseline][f'{phase}_mib_s']:>16.1f}"
            line += f"{summary['ratio'][baseline][phase]:>7.2f}"
        print(line)
    for phase in ("upload", "download"):
        cpu = ", ".join(f"{name} {methods[name][f'{phase}_cpu_s']:.2f}" for name in methods)
        print(f"client CPU seconds, {phase}: {cpu}")
    print("ratio = baseline time / modelpress time, per run (run back to back), median")
    for baseline, meaning in BASELINES.items():
        print(f"  {baseline}: {meaning}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import boto3
    import botocore
    from botocore.config import Config

    from modelpress.storage.credentials import Credentials
    from modelpress.storage.s3 import S3Settings, s3_client

    process, endpoint = start_moto()
    work = Path(tempfile.mkdtemp(prefix="modelpress-bench-", dir=args.work_dir))
    try:
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench-secret",
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_REGION": "us-east-1",
            }
        )
        settings = S3Settings.from_environment()
        modelpress_client = s3_client(
            Credentials("bench", "bench-secret", endpoint_url=endpoint), settings
        )
        session = boto3.session.Session(
            aws_access_key_id="bench", aws_secret_access_key="bench-secret", region_name="us-east-1"
        )
        plain = session.client(
            "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"})
        )
        same_config = session.client(
            "s3", endpoint_url=endpoint, config=modelpress_client.meta.config
        )
        transfer = settings.transfer_config()
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        plain.create_bucket(Bucket=bucket)

        print(f"writing a {args.size_mib} MiB artifact under {work} ...", file=sys.stderr)
        sizes = make_artifact(work / "source", args.size_mib)
        total = sum(sizes.values())
        methods: list[Any] = [
            Modelpress(bucket),
            RawBoto3("boto3", plain, transfer, bucket),
            RawBoto3("boto3-mpconfig", same_config, transfer, bucket),
        ]
        # One untimed round trip each: imports, client set-up and connection pools warm up.
        warm = work / "warm-up"
        (warm / "source").mkdir(parents=True)
        (warm / "source" / "config.json").write_bytes(b"{}")
        for method in methods:
            method.upload(warm / "source", -1)
            method.download(warm / method.name, -1)
            method.clean(-1)
        runs: list[dict[str, Any]] = []
        for run in range(args.runs):
            for result in measure(methods, work / "source", work, run):
                runs.append(result)
                print(
                    f"run {run} {result['method']:<15} "
                    f"upload {total / MIB / result['upload_s']:7.1f} MiB/s  "
                    f"download {total / MIB / result['download_s']:7.1f} MiB/s",
                    file=sys.stderr,
                )
        summary = summarize(runs, total)
        print_table(summary, total, args.runs)
        ratio = summary["ratio"]["boto3"]["round_trip"]
        target_met = ratio >= 0.9
        print(
            f"target: modelpress round trip >= 0.9x plain boto3: {ratio:.2f}x, "
            f"{'met' if target_met else 'NOT met'}"
        )
        if args.json:
            out = Path(args.json)
            out.parent.mkdir(parents=True, exist_ok=True)
            document = {
                "artifact": {"total_bytes": total, "files": sizes},
                "settings": {
                    "chunk_mib": settings.chunk_mib,
                    "max_concurrency": settings.max_concurrency,
                    "server": "moto in a separate process on 127.0.0.1 (plain HTTP)",
                    "baselines": BASELINES,
                },
                "environment": {
                    "python": platform.python_version(),
                    "boto3": boto3.__version__,
                    "botocore": botocore.__version__,
                    "cpus": os.cpu_count(),
                    "load_average": os.getloadavg(),
                },
                "runs": runs,
                "summary": summary,
                "target_met": target_met,
            }
            out.write_text(json.dumps(document, indent=2) + "\n")
            print(f"wrote {out}", file=sys.stderr)
        return 0
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
