"""One replica across nodes: a LeaderWorkerSet running vLLM's multi-node mode.

When sizing spreads a variant over several nodes (tensor parallel within each,
pipeline parallel across them; `modelpress.sizing.nodes`), each replica is an LWS
group of one pod per node. Every pod pulls and verifies the artifact first; the
leader (worker index 0) runs vLLM's OpenAI server as node rank 0, the workers run
`vllm serve --headless` as the other ranks, all pointed at the leader's address
(vLLM's multiprocessing backend across nodes: no Ray). A pod that dies takes its
group down and up again (a pipeline missing a stage serves nothing), and a rollout
replaces one group at a time without surge, so it never waits for spare GPUs.
"""

from __future__ import annotations

from typing import Any

from modelpress.plan import names
from modelpress.plan.serving import Served, pod_template, server_args, server_command

LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
LWS_KIND = "LeaderWorkerSet"
#: torch.distributed's rendezvous on the leader.
MASTER_PORT = 29500


def _multinode_args(served: Served, rank: str) -> list[str]:
    return [
        "--nnodes", str(served.sizing.nodes),
        "--node-rank", rank,
        "--master-addr", "$(LWS_LEADER_ADDRESS)",
        "--master-port", str(MASTER_PORT),
    ]  # fmt: skip


def leader_args(served: Served) -> list[str]:
    """The OpenAI server, as node rank 0 of the group."""
    return server_args(served) + _multinode_args(served, "0")


def worker_command() -> list[str]:
    return ["python3", "-m", "vllm.entrypoints.cli.main"]


def worker_args(served: Served) -> list[str]:
    """`vllm serve --headless` as this pod's node rank: the engine without an API."""
    return [
        "serve", served.model_dir,
        "--served-model-name", served.model,
        *served.sizing.vllm_args,
        *_multinode_args(served, "$(LWS_WORKER_INDEX)"),
        "--headless",
    ]  # fmt: skip


def leader_worker_set(served: Served, autoscaler: str | None = None) -> dict[str, Any]:
    """The LeaderWorkerSet serving `served`; with `autoscaler` (its kind), the group count
    is left to it."""
    leader = pod_template(served, server_command(), leader_args(served))
    worker = pod_template(served, worker_command(), worker_args(served), answers=False)
    lws_spec: dict[str, Any] = {} if autoscaler else {"replicas": served.spec.serving.replicas}
    lws_spec |= {
        "leaderWorkerTemplate": {
            "size": served.sizing.nodes,
            "restartPolicy": "RecreateGroupOnPodRestart",
            "leaderTemplate": leader,
            "workerTemplate": worker,
        },
        "rolloutStrategy": {
            "type": "RollingUpdate",
            "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0},
        },
        "startupPolicy": "LeaderCreated",
    }
    annotations = {
        names.ANNOTATION_SPEC_HASH: names.short_hash(lws_spec),
        names.ANNOTATION_ARTIFACT: served.artifact_uri,
        f"{names.DOMAIN}/gpus": str(served.sizing.gpus),
    }
    if autoscaler:
        annotations[names.ANNOTATION_AUTOSCALER] = autoscaler
    return {
        "apiVersion": LWS_API_VERSION,
        "kind": LWS_KIND,
        "metadata": {
            "name": names.deployment_name(served.model),
            "namespace": served.namespace,
            "labels": names.labels(
                served.model, names.SERVING, variant=served.variant, key=served.key
            ),
            "annotations": annotations,
        },
        "spec": lws_spec,
    }
