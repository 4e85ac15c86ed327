"""The image layer's exceptions; each carries what it is about (a reference, a digest, a path)."""

from __future__ import annotations


class ImageFailure(Exception):
    """Base of every error of berth.images."""


class ReferenceError_(ImageFailure):
    """An image reference that cannot be parsed (named with _ to spare the builtin)."""


class ImageNotFound(ImageFailure):
    def __init__(self, ref: str) -> None:
        super().__init__(f"image {ref!r} not found (berth images lists what is here)")
        self.ref = ref


class DigestMismatch(ImageFailure):
    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: digest mismatch: expected {expected}, got {actual}")
        self.expected, self.actual = expected, actual


class SizeMismatch(ImageFailure):
    def __init__(self, what: str, expected: int, actual: int) -> None:
        super().__init__(f"{what}: size mismatch: expected {expected} bytes, got {actual}")
        self.expected, self.actual = expected, actual


class UnsafeLayer(ImageFailure):
    """A layer entry that would write outside the layer, or that is not allowed."""


class ArchiveError(ImageFailure):
    """A docker-archive or oci-archive that cannot be read."""


class RegistryError(ImageFailure):
    """The registry refused or failed a request; the message has the URL and status."""


class ImageInUse(ImageFailure):
    """An image that a container or another tag still needs."""
