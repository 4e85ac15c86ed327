"""Image references, normalised the way docker does.

busybox                     -> docker.io/library/busybox:latest
user/app:1.0                -> docker.io/user/app:1.0
localhost:5000/x            -> localhost:5000/x:latest
quay.io/a/b@sha256:...      -> quay.io/a/b@sha256:...
"""

from __future__ import annotations

from berth.images.errors import ReferenceError_
from berth.oci.errors import SpecError
from berth.oci.image import check_digest

DEFAULT_REGISTRY = "docker.io"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-/")
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class Reference:
    __slots__ = ("registry", "repository", "tag", "digest")

    def __init__(self, registry: str, repository: str, tag: str | None,
                 digest: str | None) -> None:
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest

    @property
    def name(self) -> str:
        """registry/repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    @property
    def short(self) -> str:
        """The name as docker prints it (docker.io/library/ dropped)."""
        n = self.name
        if n.startswith(DEFAULT_REGISTRY + "/library/"):
            n = n[len(DEFAULT_REGISTRY) + 9:]
        elif n.startswith(DEFAULT_REGISTRY + "/"):
            n = n[len(DEFAULT_REGISTRY) + 1:]
        return n

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reference) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def parse(text: str) -> Reference:
    """Parse and normalise an image reference; ReferenceError_ says what is wrong."""
    if not text or text != text.strip():
        raise ReferenceError_(f"invalid reference format: {text!r}")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        try:
            check_digest(digest, "digest", "reference")
        except SpecError as e:
            raise ReferenceError_(f"invalid reference {text!r}: {e.problem}") from None
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not tag or len(tag) > 128 or not set(tag) <= _TAG_CHARS or tag[0] in ".-":
            raise ReferenceError_(f"invalid tag in {text!r}")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"
                      or first != first.lower()):
        registry, repo = first, remainder
    else:
        registry, repo = DEFAULT_REGISTRY, rest
    if registry == "index.docker.io":
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in repo:
        repo = "library/" + repo
    if registry != registry.lower() and registry not in (DEFAULT_REGISTRY,):
        raise ReferenceError_(f"invalid reference format: {text!r} must be lowercase")
    if not repo or not set(repo) <= _NAME_CHARS or any(
            not c or not c[0].isalnum() or not c[-1].isalnum() for c in repo.split("/")):
        raise ReferenceError_(f"invalid reference format: repository name in {text!r} must be "
                              "lowercase letters, digits and separators")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, repo, tag, digest)
