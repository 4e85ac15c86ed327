"""The engine's exceptions."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error of berth.engine."""


class ContainerNotFound(EngineError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No such container: {ref}")
        self.ref = ref


class NameInUse(EngineError):
    def __init__(self, name: str, cid: str) -> None:
        super().__init__(f'the container name "/{name}" is already in use by container '
                         f'"{cid}": remove or rename that container to reuse the name')


class InvalidOption(EngineError):
    """A run/create flag whose value cannot be used; the message names the flag."""


class ContainerRunning(EngineError):
    pass
