"""The registry client's pure parts, without HTTP: errors, hosts, transport rules, challenges.

registry.py (the client, on http11: pull, push and login, in the main
process and in each unpack worker) imports these; nothing here may import an
HTTP library, asyncio or ipaddress (an IPv6 literal excepted), so that an
unpack worker starts lean, and so that they are tested without a server.
"""

from __future__ import annotations

from berth.images.errors import RegistryError
from berth.oci import image as oci

MANIFEST_ACCEPT = ", ".join((oci.OCI_INDEX, oci.OCI_MANIFEST, oci.DOCKER_LIST,
                             oci.DOCKER_MANIFEST))
MAX_MANIFEST = 4 << 20  # as containerd: a manifest or config bigger than this is refused
USER_AGENT = "berth/0.1"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
RETRIES = 5  # attempts after a broken connection, per request (or per blob without progress)
CONNECT_RETRIES = 2  # attempts after a refused connection or an unknown host


class Unauthorized(RegistryError):
    """The registry wants credentials we do not have, or refused the ones we gave."""


class NotFound(RegistryError):
    """The registry has no such repository, manifest or blob."""


class BlobNotFound(NotFound):
    pass


class Unreachable(RegistryError):
    """The connection failed (refused, reset, timed out) after the retries."""


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1, with or without a port."""
    name = host
    if name.startswith("["):
        name = name[1:name.find("]")]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    parts = name.split(".")
    if len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts):
        return parts[0] == "127"
    if ":" in name:
        import ipaddress
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False
    return False


def endpoint_for(registry: str) -> str:
    """The host to talk to for a registry name (docker.io lives at registry-1.docker.io)."""
    return DOCKER_HUB_ENDPOINT if registry in ("docker.io", "index.docker.io") else registry


def transport(endpoint: str, tls_verify: bool | None) -> tuple[str, bool, bool]:
    """(scheme, verify certificates, fall back to http if https fails) for an endpoint.

    Loopback: http, as docker's default for localhost; tls_verify=False
    elsewhere: https unverified, falling back to http (decided by the first ping).
    """
    loopback = is_loopback(endpoint)
    verify = (not loopback) if tls_verify is None else tls_verify
    scheme = "http" if loopback and tls_verify is not True else "https"
    return scheme, verify, not verify and scheme == "https"


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="https://x/token",service="x",scope="a:b:pull"` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            i += 1
            value = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(rest[i])
                i += 1
            i += 1
            params[key] = "".join(value)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
    return scheme.lower(), params


def error_text(status: int, body: bytes) -> str:
    """The registry's own error message ({"errors": [{"code", "message"}]}) or the status."""
    try:
        from berth.oci import jsonfast
        errs = jsonfast.loads(body)["errors"]
        return "; ".join(f"{e.get('code', '').lower().replace('_', ' ')}: {e.get('message', '')}"
                         .strip(": ") for e in errs)
    except Exception:
        text = body[:200].decode("utf-8", "replace").strip()
        return f"HTTP {status}" + (f": {text}" if text else "")


def token_of(body: bytes, host: str, realm: str) -> tuple[str, float]:
    """(token, seconds it lives) from a token service's JSON answer."""
    try:
        from berth.oci import jsonfast
        doc = jsonfast.loads(body)
        token = doc.get("token") or doc.get("access_token")
        expires = float(doc.get("expires_in") or 60)
    except (ValueError, TypeError, AttributeError):
        token, expires = None, 0.0
    if not isinstance(token, str) or not token:
        raise RegistryError(f"{host}: token service {realm} sent no token")
    return token, expires
