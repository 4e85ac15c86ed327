"""Registry credentials in the auth.json format docker and podman read; login and logout.

Read (first match wins): $BERTH_AUTH_FILE, $REGISTRY_AUTH_FILE, podman's
${XDG_RUNTIME_DIR}/containers/auth.json (/run/containers/<uid>/auth.json when
XDG_RUNTIME_DIR is unset), ~/.config/containers/auth.json, and docker's
$DOCKER_CONFIG/config.json or ~/.docker/config.json. Entries may be keyed by
a host ("127.0.0.1:5000"), a URL ("https://index.docker.io/v1/") or, as
podman allows, a host/namespace prefix. docker's credHelpers and credsStore
are asked through their docker-credential-<name> programs.

Written (by login, and removed by logout): $BERTH_AUTH_FILE, else podman's path,
atomically with mode 0600, keeping every other key of the file as it was.
"""

from __future__ import annotations

import binascii
import os

from berth.images.errors import RegistryError
from berth.oci import jsonfast


class Credentials:
    """A username and password, and maybe an OAuth2 refresh token (docker's "identitytoken").

    A plain class, not a dataclass: `dataclasses` costs a pull ~15 ms to import.
    """

    __slots__ = ("username", "password", "identity_token")

    def __init__(self, username: str, password: str, identity_token: str | None = None) -> None:
        self.username, self.password, self.identity_token = username, password, identity_token

    def _key(self) -> tuple[str, str, str | None]:
        return (self.username, self.password, self.identity_token)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Credentials) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:  # never print a password
        return f"Credentials(username={self.username!r}, password=***)"


def podman_auth_file() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "containers", "auth.json")
    return f"/run/containers/{os.getuid()}/auth.json"


def docker_config_file() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    return os.path.join(base, "config.json")


def write_file() -> str:
    """The file `berth login` writes: $BERTH_AUTH_FILE, else podman's auth.json."""
    return os.environ.get("BERTH_AUTH_FILE") or podman_auth_file()


def read_files() -> list[str]:
    """The files credentials are read from, in order (missing ones included)."""
    files = [os.environ.get("BERTH_AUTH_FILE"), os.environ.get("REGISTRY_AUTH_FILE"),
             podman_auth_file(), os.path.expanduser("~/.config/containers/auth.json"),
             docker_config_file()]
    out: list[str] = []
    for f in files:
        if f and f not in out:
            out.append(f)
    return out


def normalize_key(key: str) -> str:
    """An auths key as host[/path]: scheme and /v1/, /v2/ dropped; docker.io for the hub."""
    k = key.strip()
    for prefix in ("https://", "http://"):
        if k.startswith(prefix):
            k = k[len(prefix):]
    k = k.rstrip("/")
    for suffix in ("/v1", "/v2"):
        if k.endswith(suffix):
            k = k[:-len(suffix)]
    host, sep, path = k.partition("/")
    if host in ("index.docker.io", "registry-1.docker.io"):
        host = "docker.io"
    return host + sep + path


def _load(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            doc = jsonfast.loads(f.read())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise RegistryError(f"{path}: cannot read credentials: {e}") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{path}: not a JSON object")
    return doc


def _decode(entry: object, path: str, key: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken") or None
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = binascii.a2b_base64(auth).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise RegistryError(f"{path}: auths[{key!r}].auth is not base64 of "
                                "user:password") from None
        if not sep:
            raise RegistryError(f"{path}: auths[{key!r}].auth is not base64 of user:password")
        return Credentials(user, password, token)
    if isinstance(entry.get("username"), str):  # older docker wrote them apart
        return Credentials(entry["username"], str(entry.get("password", "")), token)
    if token:
        return Credentials("<token>", "", token)
    return None


def _helper(name: str, server: str) -> Credentials | None:
    """Ask docker-credential-<name> (docker's credential helper protocol)."""
    import subprocess
    try:
        p = subprocess.run([f"docker-credential-{name}", "get"], input=server.encode(),
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    try:
        doc = jsonfast.loads(p.stdout)
        user, secret = doc["Username"], doc["Secret"]
    except (ValueError, KeyError, TypeError):
        return None
    if user == "<token>":
        return Credentials(user, "", secret)
    return Credentials(user, secret)


def lookup(registry: str, repository: str | None = None) -> Credentials | None:
    """Credentials for a registry (and repository) from the first file that has some."""
    want = normalize_key(registry)
    scoped = f"{want}/{repository}" if repository else want
    for path in read_files():
        doc = _load(path)
        auths = doc.get("auths") or {}
        if isinstance(auths, dict):
            best: tuple[int, Credentials] | None = None
            for key, entry in auths.items():
                k = normalize_key(key)
                if scoped == k or scoped.startswith(k + "/"):
                    creds = _decode(entry, path, key)
                    if creds is not None and (best is None or len(k) > best[0]):
                        best = (len(k), creds)
            if best is not None:
                return best[1]
        helpers = doc.get("credHelpers") or {}
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if normalize_key(key) == want and isinstance(name, str):
                    creds = _helper(name, key)
                    if creds is not None:
                        return creds
        store = doc.get("credsStore")
        if isinstance(store, str) and store:
            server = "https://index.docker.io/v1/" if want == "docker.io" else want
            creds = _helper(store, server)
            if creds is not None:
                return creds
    return None


def _save(path: str, doc: dict) -> None:
    import json
    import tempfile
    d = os.path.dirname(path) or "."
    os.makedirs(d, 0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".auth-", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def store_credentials(registry: str, creds: Credentials, path: str | None = None) -> str:
    """Write credentials for a registry into the auth file; return its path."""
    path = path or write_file()
    doc = _load(path)
    auths = doc.setdefault("auths", {})
    key = normalize_key(registry)
    for k in [k for k in auths if normalize_key(k) == key]:
        del auths[k]
    entry = {"auth": binascii.b2a_base64(f"{creds.username}:{creds.password}".encode(),
                                      newline=False).decode()}
    if creds.identity_token:
        entry["identitytoken"] = creds.identity_token
    auths[key] = entry
    _save(path, doc)
    return path


def login(registry: str, username: str, password: str, *, tls_verify: bool | None = None,
          path: str | None = None) -> str:
    """Check the credentials against the registry, then store them; return the file written.

    Raises Unauthorized (berth.images.registry) when the registry refuses them.
    """
    from berth.images.registry import Registry

    creds = Credentials(username, password)
    with Registry(registry, credentials=creds, tls_verify=tls_verify) as reg:
        reg.check_login()
    return store_credentials(registry, creds, path)


def logout(registry: str | None = None, *, path: str | None = None,
           all_: bool = False) -> bool:
    """Remove a registry's credentials (or every one with all_); False if there were none."""
    path = path or write_file()
    doc = _load(path)
    auths = doc.get("auths") or {}
    if all_:
        removed = bool(auths)
        doc["auths"] = {}
    else:
        if registry is None:
            raise RegistryError("logout needs a registry (or --all)")
        key = normalize_key(registry)
        gone = [k for k in auths if normalize_key(k) == key]
        for k in gone:
            del auths[k]
        removed = bool(gone)
    if removed:
        _save(path, doc)
    return removed
