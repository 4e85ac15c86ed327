"""The VM subsystem's exceptions: each names what went wrong and where.

The CLI (berth/cli/vm.py) turns them into a message and exit status in one place.
Messages are lowercase, without a full stop, and say what to do next where they can.
"""

from __future__ import annotations


class VMError(Exception):
    """Base of every error the vm library reports to its caller."""


class DefinitionError(VMError):
    """A VM definition (YAML or flags) is invalid; `field` is its path (disks[1].size)."""

    def __init__(self, field: str, problem: str, source: str = "definition") -> None:
        super().__init__(f"{source}: {field}: {problem}")
        self.field = field
        self.problem = problem
        self.source = source


class VMNotFound(VMError):
    def __init__(self, name: str) -> None:
        super().__init__(f"vm {name!r} does not exist (see `berth vm ls`)")
        self.name = name


class VMExists(VMError):
    def __init__(self, name: str) -> None:
        super().__init__(f"vm {name!r} already exists: remove it with `berth vm rm {name}`"
                         " or pick another name")
        self.name = name


class InvalidState(VMError):
    """The verb is not allowed in the VM's current state (e.g. rm of a running VM)."""


class ResourceError(VMError):
    """The host cannot give what the VM asks for (RAM, vCPUs) without --overcommit."""


class AccelError(VMError):
    """The requested accelerator cannot be used (e.g. --accel kvm where KVM hangs)."""


class QemuError(VMError):
    """qemu or qemu-img failed; carries the command and what it wrote on stderr."""

    def __init__(self, message: str, cmd: list[str] | None = None, stderr: str = "") -> None:
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        super().__init__(f"{message}: {detail}" if detail else message)
        self.cmd = cmd or []
        self.stderr = stderr


class QMPError(VMError):
    """A QMP command failed or the monitor could not be reached."""


class GuestBuildError(VMError):
    """The test guest (kernel + initramfs) could not be built."""
