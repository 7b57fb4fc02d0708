"""Check pod specs against the Pod Security Standard "restricted" (Kubernetes v1.30 rules).

Reusable by any test that renders workloads (operator children, Helm chart pods):

    from tests.pss import assert_restricted, violations
    assert_restricted(job_dict)                      # Pod, template, Job, Deployment, CronJob...
    assert violations(pod, read_only_root=True) == []

The checks follow https://kubernetes.io/docs/concepts/security/pod-security-standards/
(baseline and restricted profiles, latest version). `read_only_root` and a narrower
`allowed_volumes` add this project's own stricter rules on top.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Volume types the restricted profile allows.
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
#: The only capability the restricted profile lets a container add.
ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
_SECCOMP_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def pod_spec_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod spec inside a Pod, a pod template, or any workload (Job, Deployment, CronJob...)."""
    kind = obj.get("kind")
    if kind == "Pod" or "containers" in obj.get("spec", {}):
        return obj["spec"]
    if "containers" in obj:  # already a pod spec
        return obj
    spec = obj.get("spec", {})
    if "jobTemplate" in spec:  # CronJob
        return pod_spec_of(spec["jobTemplate"])
    if "template" in spec:
        return pod_spec_of(spec["template"])
    if "template" in obj:  # a bare template holder
        return pod_spec_of(obj["template"])
    raise ValueError(
        f"no pod spec found in {kind or 'object'} {obj.get('metadata', {}).get('name')}"
    )


def _containers(spec: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for field in _CONTAINER_LISTS:
        for container in spec.get(field) or []:
            yield f"{field}[{container.get('name', '?')}]", container


def violations(
    obj: Mapping[str, Any],
    *,
    allowed_volumes: Iterable[str] = RESTRICTED_VOLUME_TYPES,
    read_only_root: bool = False,
) -> list[str]:
    """Every rule of the restricted profile `obj`'s pod spec breaks, one line each."""
    spec = pod_spec_of(obj)
    pod_sc = spec.get("securityContext") or {}
    found: list[str] = []

    # --- baseline ---------------------------------------------------------------
    for host_field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host_field):
            found.append(f"spec.{host_field} must be unset or false")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("spec.securityContext.windowsOptions.hostProcess must not be true")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"spec.securityContext.sysctls: {sysctl.get('name')} is not a safe sysctl")
    found += _selinux("spec.securityContext", pod_sc)
    found += _apparmor("spec.securityContext", pod_sc)

    allowed = set(allowed_volumes)
    for volume in spec.get("volumes") or []:
        types = [key for key in volume if key != "name"]
        for volume_type in types:
            if volume_type not in allowed:
                found.append(
                    f"volume {volume.get('name')!r} has type {volume_type}; allowed: "
                    f"{', '.join(sorted(allowed))}"
                )

    # --- restricted: pod level ----------------------------------------------------
    pod_non_root = pod_sc.get("runAsNonRoot")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_sc.get("runAsUser") == 0:
        found.append("spec.securityContext.runAsUser must not be 0")
    if pod_non_root is False:
        found.append("spec.securityContext.runAsNonRoot must not be false")
    if pod_seccomp is not None and pod_seccomp not in _SECCOMP_ALLOWED:
        found.append(f"spec.securityContext.seccompProfile.type {pod_seccomp} is not allowed")

    for where, container in _containers(spec):
        sc = container.get("securityContext") or {}
        if sc.get("privileged"):
            found.append(f"{where}: privileged must be false")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{where}: windowsOptions.hostProcess must not be true")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"{where}: hostPort {port['hostPort']} is not allowed")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"{where}: procMount must be Default")
        found += _selinux(f"{where}.securityContext", sc)
        found += _apparmor(f"{where}.securityContext", sc)

        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: securityContext.allowPrivilegeEscalation must be false")
        non_root = sc.get("runAsNonRoot", pod_non_root)
        if non_root is not True:
            found.append(
                f"{where}: runAsNonRoot must be true (in the container's or the pod's securityContext)"
            )
        if sc.get("runAsUser") == 0:
            found.append(f"{where}: runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in _SECCOMP_ALLOWED:
            found.append(
                f"{where}: seccompProfile.type must be RuntimeDefault or Localhost "
                f"(pod or container), got {seccomp}"
            )
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{where}: securityContext.capabilities.drop must include ALL")
        for added in capabilities.get("add") or []:
            if added not in ADDABLE_CAPABILITIES:
                found.append(f"{where}: capability {added} may not be added")
        if read_only_root and sc.get("readOnlyRootFilesystem") is not True:
            found.append(f"{where}: securityContext.readOnlyRootFilesystem must be true")
    return found


def _selinux(where: str, sc: Mapping[str, Any]) -> list[str]:
    options = sc.get("seLinuxOptions") or {}
    problems = []
    if options.get("type", "") not in _SELINUX_TYPES:
        problems.append(f"{where}.seLinuxOptions.type {options['type']} is not allowed")
    for field in ("user", "role"):
        if options.get(field):
            problems.append(f"{where}.seLinuxOptions.{field} must not be set")
    return problems


def _apparmor(where: str, sc: Mapping[str, Any]) -> list[str]:
    profile = (sc.get("appArmorProfile") or {}).get("type")
    if profile is not None and profile not in ("RuntimeDefault", "Localhost"):
        return [f"{where}.appArmorProfile.type {profile} is not allowed"]
    return []


def assert_restricted(
    obj: Mapping[str, Any],
    *,
    allowed_volumes: Iterable[str] = RESTRICTED_VOLUME_TYPES,
    read_only_root: bool = False,
) -> None:
    """Fail with every violation listed when `obj`'s pods would be rejected as restricted."""
    problems = violations(obj, allowed_volumes=allowed_volumes, read_only_root=read_only_root)
    name = obj.get("metadata", {}).get("name", "")
    assert not problems, f"{obj.get('kind', 'pod spec')} {name} breaks PSS restricted:\n  " + (
        "\n  ".join(problems)
    )
