"""kopf settings hardened for long runs and many objects.

- Watches time out on both ends and restart when silent (kopf #957, #585, #1276).
- A bounded number of event workers (kopf #1011) and a backoff on API errors.
- kopf keeps no diff-base: the operator has no create/update handlers (its own
  work queue reconciles, and compares generations itself), so kopf's copy of
  every object it sees, and the annotation patch per change, would be pure cost.
- The deletion handler's progress lives in annotations: the CRD's status schema
  is strict and would prune kopf's own status fields, making it repeat.
- Child watches are filtered on the server by the managed-by label.
- Handler log lines are not posted as Events; the operator posts its own, on
  transitions only.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from modelpress.config import OperatorConfig
from modelpress.plan.names import DOMAIN, MANAGED_BY, MANAGER

PROGRESS_PREFIX = f"kopf.{DOMAIN}"
EVENT_WORKERS = 2000
"""Objects whose watch events kopf processes at once. Its handlers here only index
children and queue models (reconciles run on the operator's own `workerLimit`
workers), so a low bound would only let events, with their full bodies, pile up."""
FINALIZER = f"{DOMAIN}/artifacts"


class NoDiffBase(kopf.DiffBaseStorage):
    """Every object looks handled and unchanged to kopf: no copies, no annotation.

    Only deletion is a kopf "changing" handler here, and kopf detects deletion from
    `deletionTimestamp`, not from a diff."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure(
    settings: kopf.OperatorSettings, config: OperatorConfig, standalone: bool | None = None
) -> None:
    watch = config.watch
    settings.watching.server_timeout = watch.server_timeout_seconds
    settings.watching.client_timeout = watch.client_timeout_seconds
    settings.watching.connect_timeout = watch.connect_timeout_seconds
    settings.watching.inactivity_timeout = watch.inactivity_timeout_seconds
    settings.watching.reconnect_backoff = watch.reconnect_backoff_seconds
    selector = f"{MANAGED_BY}={MANAGER}"
    settings.watching.label_selectors["batch", "jobs"] = selector
    settings.watching.label_selectors["apps", "deployments"] = selector
    settings.watching.label_selectors["", "services"] = selector

    settings.queueing.worker_limit = EVENT_WORKERS
    # An idle per-object worker holds one of the limited slots; let it go soon.
    settings.queueing.idle_timeout = 0.05
    settings.execution.max_workers = config.worker_limit
    settings.execution.default_backoff = config.backoff_seconds
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = watch.connect_timeout_seconds
    settings.networking.error_backoffs = (1, 2, 5, 10, 20, 30)

    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PROGRESS_PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.finalizer = FINALIZER

    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = MANAGER

    run_standalone = config.peering.standalone if standalone is None else standalone
    settings.peering.standalone = run_standalone
    settings.peering.name = config.peering.name
    settings.peering.mandatory = not run_standalone
