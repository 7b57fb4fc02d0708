"""The leader's and the workers' command lines of a LeaderWorkerSet, as vLLM 0.32's own
argument parser reads them (in vLLM's environment): a flag vLLM does not know, or a
multi-node setting it rejects, fails here rather than in a cluster."""

from __future__ import annotations

import json
import os
import subprocess

from tests.local.test_vllm_e2e import vllm_python  # noqa: F401  (fixture)
from tests.plan.test_plan_multinode import big_spec, built, child
from tests.plan.test_plan_reconcile import plan

from modelpress.plan.multinode import LWS_KIND

PARSE = r"""
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.engine.arg_utils import EngineArgs

found = {}
for role, argv in json.loads(sys.argv[1]).items():
    if not argv[0].startswith("-"):  # `vllm serve MODEL ...`: serve makes the tag --model
        argv = ["--model", *argv]
    parser = make_arg_parser(FlexibleArgumentParser())
    args = parser.parse_args(argv)
    validate_parsed_serve_args(args)
    engine = EngineArgs.from_cli_args(args)
    found[role] = {
        "model": engine.model, "nnodes": engine.nnodes, "node_rank": engine.node_rank,
        "master_addr": engine.master_addr, "tp": engine.tensor_parallel_size,
        "pp": engine.pipeline_parallel_size, "headless": bool(getattr(args, "headless", False)),
    }
print(json.dumps(found))
"""


def test_vllm_reads_the_leader_and_worker_arguments(vllm_python: str, tmp_path) -> None:  # noqa: F811
    spec = big_spec()
    group = child(plan(spec, built(spec)), LWS_KIND)["spec"]["leaderWorkerTemplate"]
    leader = group["leaderTemplate"]["spec"]["containers"][0]["args"]
    worker = group["workerTemplate"]["spec"]["containers"][0]["args"]
    # What the kubelet does with $(VAR): LWS sets these in every pod of the group.
    expand = {"$(LWS_LEADER_ADDRESS)": "tiny-vllm-0.tiny-vllm.ml", "$(LWS_WORKER_INDEX)": "1"}
    model_dir = leader[leader.index("--model") + 1]
    expand[model_dir] = str(tmp_path)  # the pulled artifact's directory, here empty
    argv = {
        "leader": [expand.get(a, a) for a in leader],
        "worker": [expand.get(a, a) for a in worker[1:]],  # after `serve`, as `vllm` reads it
    }
    answer = subprocess.run(
        [vllm_python, "-c", PARSE, json.dumps(argv)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr[-3000:]
    parsed = json.loads(answer.stdout.strip().splitlines()[-1])
    assert parsed["leader"] == {
        "model": str(tmp_path),
        "nnodes": 2, "node_rank": 0, "master_addr": "tiny-vllm-0.tiny-vllm.ml",
        "tp": 8, "pp": 2, "headless": False,
    }  # fmt: skip
    assert replace_keys(parsed["worker"], model=None) == replace_keys(
        parsed["leader"], model=None, node_rank=1, headless=True
    )


def replace_keys(found: dict, **changes: object) -> dict:
    return {**found, **changes}
