"""Errors of local mode. Each message says what to change; the CLI prints it as one line."""

from __future__ import annotations


class LocalRunError(Exception):
    """A run could not go on; the message names the cause and the fix."""


class JobManifestError(LocalRunError):
    """A Job manifest that cannot be run as a local process (unknown volume, no container)."""


class VllmNotFoundError(LocalRunError):
    """No vLLM installation could be found where configuration points."""


class ServerStartError(LocalRunError):
    """The vLLM server exited or did not become ready in time."""


class PortInUseError(LocalRunError):
    """The serving port is taken by another process."""
