"""A distillation over several nodes as a JobSet, where the cluster has JobSet.

JobSet (jobset.x-k8s.io) runs the gang as one unit: when any pod of it fails, the
whole gang is recreated (torchrun's workers cannot carry on without a peer) and
resumes from the checkpoint in the store; it makes the headless Service the pods
find each other by and removes it with the gang. Without JobSet, the same pods run as
an indexed Job beside a headless Service of the operator's (`plan.jobs`).

The JobSet has the name the indexed Job would have; its one replicated Job is that
Job, so pod `i` is `<name>-node-0-<i>` in the subdomain `<name>`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from modelpress.plan import names
from modelpress.plan.conditions import ending
from modelpress.plan.observed import JobState

JOBSET_KIND = "JobSet"
JOBSET_API_VERSION = "jobset.x-k8s.io/v1alpha2"
#: The label JobSet puts on its Jobs and their pods.
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB = "node"
#: How long after one of its Jobs ends the operator reads a JobSet again (JobSets are
#: not watched: a cluster without JobSet has no such API to watch).
JOBSET_SETTLE_SECONDS = 2.0
#: Job failure reasons that no restart can cure: a usage error (the pod failure policy
#: fails the Job at once) or the time limit.
FINAL_FAILURES = ["PodFailurePolicy", "DeadlineExceeded"]


def master_address(name: str) -> str:
    """Pod 0 of the gang, where torchrun's rendezvous listens."""
    return f"{name}-{REPLICATED_JOB}-0-0.{name}"


def as_jobset(job: Mapping[str, Any]) -> dict[str, Any]:
    """The indexed Job `job` as a JobSet of the same name: retries become restarts of the
    whole gang (up to the Job's backoffLimit), and the JobSet's TTL removes it all."""
    job_spec = copy.deepcopy(dict(job["spec"]))
    restarts = job_spec.pop("backoffLimit")
    ttl = job_spec.pop("ttlSecondsAfterFinished", None)
    job_spec["backoffLimit"] = 0  # a failed pod fails the Job, and the JobSet restarts all
    job_spec["template"]["spec"].pop("subdomain", None)  # JobSet sets its own
    metadata = job["metadata"]
    spec: dict[str, Any] = {
        "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
        "failurePolicy": {
            "maxRestarts": restarts,
            "rules": [
                {"name": "final", "action": "FailJobSet", "onJobFailureReasons": FINAL_FAILURES}
            ],
        },
        "replicatedJobs": [
            {
                "name": REPLICATED_JOB,
                "replicas": 1,
                "template": {"metadata": {"labels": dict(metadata["labels"])}, "spec": job_spec},
            }
        ],
    }
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {
        "apiVersion": JOBSET_API_VERSION,
        "kind": JOBSET_KIND,
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "labels": dict(metadata["labels"]),
            "annotations": {names.ANNOTATION_SPEC_HASH: names.short_hash(spec)},
        },
        "spec": spec,
    }


def jobset_state(obj: Mapping[str, Any]) -> JobState:
    """A JobSet as the planner reads a Job: its replicated Job as created, finished when
    JobSet says Completed or Failed, with that Job's counts and the gang's restarts."""
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    replicated: Mapping[str, Any] = next(iter(spec.get("replicatedJobs") or []), {})
    job = {
        "metadata": obj.get("metadata") or {},
        "spec": replicated.get("template", {}).get("spec"),
    }
    counts: Mapping[str, Any] = next(iter(status.get("replicatedJobsStatus") or []), {})
    complete, failure_reason, failure_message = ending(status, "Completed")
    return replace(
        JobState.from_object(job),
        active=int(counts.get("active") or 0),
        succeeded=int(counts.get("succeeded") or 0),
        failed=int(status.get("restarts") or 0) + int(counts.get("failed") or 0),
        complete=complete,
        failure_reason=failure_reason,
        failure_message=failure_message,
        backoff_limit=(spec.get("failurePolicy") or {}).get("maxRestarts"),
        ready=counts.get("ready"),
        kind=JOBSET_KIND,
    )


def pod_selector(job: JobState) -> dict[str, str]:
    """The labels of a Job's pods (all of a JobSet's)."""
    if job.kind == JOBSET_KIND:
        return {JOBSET_NAME_LABEL: job.name}
    return {"job-name": job.name}
