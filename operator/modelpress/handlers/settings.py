"""kopf settings hardened for long runs and many objects.

- Watches time out on both ends and restart when silent (kopf #957, #585, #1276).
- A bounded number of workers (kopf #1011) and a backoff on API errors.
- kopf's progress and diff-base live in annotations: the CRD's status schema is
  strict and would prune kopf's own status fields, making handlers repeat.
- Child watches are filtered on the server by the managed-by label.
- Handler log lines are not posted as Events; the operator posts its own, on
  transitions only.
"""

from __future__ import annotations

import logging

import kopf

from modelpress.config import OperatorConfig
from modelpress.plan.names import DOMAIN, MANAGED_BY, MANAGER

PROGRESS_PREFIX = f"kopf.{DOMAIN}"
FINALIZER = f"{DOMAIN}/artifacts"


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

    settings.queueing.worker_limit = config.worker_limit
    # An idle per-object worker holds one of the limited slots; let it go soon.
    settings.queueing.idle_timeout = 0.05
    settings.execution.max_workers = config.worker_limit
    settings.execution.default_backoff = config.backoff_seconds
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = watch.connect_timeout_seconds
    settings.networking.error_backoffs = (1, 2, 5, 10, 20, 30)

    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PROGRESS_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PROGRESS_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER

    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = MANAGER

    run_standalone = config.peering.standalone if standalone is None else standalone
    settings.peering.standalone = run_standalone
    settings.peering.name = config.peering.name
    settings.peering.mandatory = not run_standalone
