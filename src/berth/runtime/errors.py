"""The runtime's exceptions: each names what went wrong and where.

The CLI turns them into a message and exit status in exactly one place
(runtime/cli.py). Messages are lowercase, without a full stop.
"""

from __future__ import annotations

from berth.oci.errors import SpecError


class RuntimeFailure(Exception):
    """Base of every error the runtime reports to its caller."""


class ConfigError(RuntimeFailure, SpecError):
    """config.json is invalid; the message names the field (e.g. linux.namespaces[2].type)."""

    def __init__(self, field: str, problem: str) -> None:
        SpecError.__init__(self, field, problem)


class ContainerNotFound(RuntimeFailure):
    def __init__(self, cid: str) -> None:
        super().__init__(f"container {cid!r} does not exist")
        self.cid = cid


class ContainerExists(RuntimeFailure):
    def __init__(self, cid: str) -> None:
        super().__init__(f"container {cid!r} already exists")
        self.cid = cid


class InvalidState(RuntimeFailure):
    """The verb is not allowed in the container's current status."""


class SetupError(RuntimeFailure):
    """Setting up the container failed (a mount, a cgroup, a namespace, a hook)."""


class UsageError(RuntimeFailure):
    """The command line was wrong."""
