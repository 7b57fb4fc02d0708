"""Every Kubernetes API permission the operator uses, and why.

The chart's RBAC grants exactly these (tests/chart renders it and compares), and the
emulated-cluster suite checks that every request the running operator sends is one
of them: nothing is used that is not granted, and each grant says what uses it.
"""

from __future__ import annotations

Permissions = dict[tuple[str, str], frozenset[str]]

#: In each namespace the operator serves (apiGroup, resource) -> verbs.
NAMESPACED: Permissions = {
    # kopf watches the models and keeps its progress and finalizer in annotations (patch).
    ("modelpress.dev", "compressedmodels"): frozenset({"get", "list", "watch", "patch"}),
    ("modelpress.dev", "compressedmodels/status"): frozenset({"patch"}),
    # Owner references with blockOwnerDeletion need update on the owner's finalizers.
    ("modelpress.dev", "compressedmodels/finalizers"): frozenset({"update"}),
    # The children: indexed (list, watch), read back on a name clash (get), created,
    # applied (server-side apply is a patch) and removed when obsolete.
    ("batch", "jobs"): frozenset({"get", "list", "watch", "create", "patch", "delete"}),
    ("apps", "deployments"): frozenset({"get", "list", "watch", "create", "patch", "delete"}),
    ("", "services"): frozenset({"get", "list", "watch", "create", "patch", "delete"}),
    ("networking.k8s.io", "networkpolicies"): frozenset(
        {"get", "list", "watch", "create", "patch", "delete"}
    ),
    # The autoscaler of a model that autoscales (KEDA's, or an HPA): read by name, never
    # watched (a cluster without KEDA has no such API to watch).
    ("autoscaling", "horizontalpodautoscalers"): frozenset({"get", "create", "patch", "delete"}),
    ("keda.sh", "scaledobjects"): frozenset({"get", "create", "patch", "delete"}),
    # The LeaderWorkerSet of a model served across nodes: read by name, never watched.
    ("leaderworkerset.x-k8s.io", "leaderworkersets"): frozenset(
        {"get", "create", "patch", "delete"}
    ),
    # The JobSet of a distillation over nodes: listed by model (only for models that
    # compress over several nodes), created, removed when obsolete; never watched
    # (its Jobs, labelled as the operator's, wake the model).
    ("jobset.x-k8s.io", "jobsets"): frozenset({"list", "create", "delete"}),
    # A failed Job's pods, listed by job-name, for their termination messages; an
    # autoscaled model's serving pods, for what a cold start costs.
    ("", "pods"): frozenset({"list"}),
    # Events on the models.
    ("", "events"): frozenset({"create"}),
    # The Secrets a model names, read by name (never listed or watched).
    ("", "secrets"): frozenset({"get"}),
}

#: Cluster-wide whatever the namespaces: kopf learns of CRDs and namespaces.
FRAMEWORK: Permissions = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): frozenset({"get", "list", "watch"}),
    ("", "namespaces"): frozenset({"list", "watch"}),
}

#: kopf's peering objects, only when several replicas elect a leader.
PEERING_VERBS = frozenset({"get", "list", "watch", "patch"})
