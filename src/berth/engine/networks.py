"""Container networks: a Linux bridge per network, a veth per container, IPAM in SQLite.

`bridge` (docker's default network) and user-defined networks each get a /24
from 10.89.0.0/16 that no host route uses yet, a bridge holding the gateway
address, and berth's own nftables table (`ip berth`) masquerading what leaves
it. A container gets the lowest free address, a veth whose peer is created
directly inside its network namespace as eth0, and /etc/hosts entries for the
containers already on its network. A bridge exists only while a container uses
it: the last one out removes it (and the nftables table when no bridge is
left), so nothing of berth stays on the host's network when nothing runs.

Not yet: port publishing, an embedded DNS server (names resolve through
/etc/hosts written at start), IPv6.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import time

from berth.engine.errors import EngineError, InvalidOption
from berth.engine.state import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    subnet TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    container TEXT NOT NULL,
    network TEXT NOT NULL REFERENCES networks(name),
    ip TEXT NOT NULL,
    PRIMARY KEY (container, network),
    UNIQUE (network, ip)
);
"""
DEFAULT = "bridge"
POOL = ipaddress.ip_network("10.89.0.0/16")


class NetworkNotFound(EngineError):
    def __init__(self, name: str) -> None:
        super().__init__(f"network {name} not found")


def _db(state: State):
    state.db.executescript(SCHEMA)
    return state.db


def bridge_name(state: State, name: str) -> str:
    if name == DEFAULT and state.root == "/var/lib/berth":
        return "berth0"
    return "bb-" + hashlib.sha256(f"{state.root}\0{name}".encode()).hexdigest()[:10]


def _host_routes() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    with open("/proc/net/route") as f:
        next(f)
        for line in f:
            fields = line.split()
            dest, mask = int(fields[1], 16), int(fields[7], 16)
            if mask:
                addr = ipaddress.IPv4Address(dest.to_bytes(4, "little"))
                plen = bin(mask).count("1")
                out.append(ipaddress.ip_network(f"{addr}/{plen}", strict=False))
    return out


def _free_subnet(state: State) -> str:
    taken = _host_routes() + [ipaddress.ip_network(r[0]) for r in
                              _db(state).execute("SELECT subnet FROM networks")]
    for sub in POOL.subnets(new_prefix=24):
        if not any(sub.overlaps(t) for t in taken):
            return str(sub)
    raise EngineError("no free /24 left in 10.89.0.0/16 for a new network")


def create(state: State, name: str, subnet: str | None = None) -> dict:
    import re
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name) or name in ("none", "host"):
        raise InvalidOption(f"invalid network name {name!r}")
    db = _db(state)
    if db.execute("SELECT 1 FROM networks WHERE name=?", (name,)).fetchone():
        raise EngineError(f"network with name {name} already exists")
    if subnet:
        try:
            net = ipaddress.ip_network(subnet)
        except ValueError:
            raise InvalidOption(f"invalid subnet {subnet!r}") from None
        if net.version != 4 or net.prefixlen > 30:
            raise InvalidOption(f"subnet {subnet}: an IPv4 network of /30 or larger is needed")
        subnet = str(net)
    db.execute("INSERT INTO networks VALUES (?,?,?,?)",
               (name, hashlib.sha256(f"{name}{time.time()}".encode()).hexdigest(),
                subnet or _free_subnet(state), time.time()))
    return get(state, name)


def get(state: State, name: str) -> dict:
    row = _db(state).execute("SELECT name, id, subnet, created FROM networks WHERE name=? OR "
                             "id LIKE ?", (name, name + "%")).fetchone()
    if row is None:
        if name == DEFAULT:
            return create(state, DEFAULT)
        raise NetworkNotFound(name)
    net = ipaddress.ip_network(row[2])
    return {"Name": row[0], "Id": row[1], "Subnet": row[2], "Gateway": str(net[1]),
            "Bridge": bridge_name(state, row[0]), "Created": row[3],
            "Containers": [r[0] for r in _db(state).execute(
                "SELECT container FROM endpoints WHERE network=?", (row[0],))]}


def names(state: State) -> list[str]:
    get(state, DEFAULT)
    return [r[0] for r in _db(state).execute("SELECT name FROM networks ORDER BY name")]


def remove(state: State, name: str) -> None:
    if name == DEFAULT:
        raise EngineError("bridge is a pre-defined network and cannot be removed")
    net = get(state, name)
    if net["Containers"]:
        raise EngineError(f"network {name} has active endpoints")
    _db(state).execute("DELETE FROM networks WHERE name=?", (name,))


# --- containers -----------------------------------------------------------------


def allocate(state: State, cid: str, name: str) -> dict:
    """Reserve the lowest free address of the network for a container."""
    net = get(state, name)
    db = _db(state)
    row = db.execute("SELECT ip FROM endpoints WHERE container=? AND network=?",
                     (cid, net["Name"])).fetchone()
    if row:
        return {**net, "IP": row[0]}
    subnet = ipaddress.ip_network(net["Subnet"])
    used = {r[0] for r in db.execute("SELECT ip FROM endpoints WHERE network=?",
                                     (net["Name"],))}
    for host in list(subnet.hosts())[1:]:
        if str(host) not in used:
            db.execute("INSERT INTO endpoints VALUES (?,?,?)", (cid, net["Name"], str(host)))
            return {**net, "IP": str(host)}
    raise EngineError(f"network {name} has no free address left")


def peers(state: State, cid: str, name: str) -> list[tuple[str, str]]:
    """(ip, container name) of the other containers on the network."""
    rows = _db(state).execute("SELECT e.ip, c.name FROM endpoints e JOIN containers c ON "
                              "c.id = e.container WHERE e.network=? AND e.container != ?",
                              (name, cid)).fetchall()
    return [(r[0], r[1]) for r in rows]


def attach(state: State, cid: str, pid: int, name: str) -> dict:
    """Plug container `cid` (init `pid`) into the network: veth, address, route."""
    from berth.engine.netlink import Netlink, in_netns

    ep = allocate(state, cid, name)
    prefix = ipaddress.ip_network(ep["Subnet"]).prefixlen
    host_end = "vb" + cid[:12]
    with Netlink() as nl:
        _ensure_bridge(nl, ep)
        if nl.exists(host_end):
            nl.delete(host_end)
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            nl.add_veth(host_end, "eth0b", fd)
        finally:
            os.close(fd)
        nl.set_master(host_end, ep["Bridge"])
        nl.set_up(host_end)
    mac = "02:42:" + ":".join(f"{int(b):02x}" for b in ep["IP"].split("."))

    def inside(nl):
        nl.rename("eth0b", "eth0")
        nl.set_mac("eth0", mac)
        nl.add_address("eth0", f"{ep['IP']}/{prefix}")
        nl.set_up("eth0")
        nl.add_default_route(ep["Gateway"], "eth0")

    in_netns(f"/proc/{pid}/ns/net", inside)
    publish(state, cid, ep["IP"])
    return {**ep, "MacAddress": mac}


def publish(state: State, cid: str, ip: str) -> None:
    """DNAT the container's published ports (-p, -P) to its address."""
    from berth.engine import ports
    c = state.get(cid)
    from berth.oci import jsonfast as json
    spec = json.loads(c["spec"])
    if not spec.get("ports") and not spec.get("publish_all"):
        return
    image_ports: dict = {}
    try:
        from berth.images.store import Store
        image_ports = (Store().config(c["image_id"]).get("config") or {}).get(
            "ExposedPorts") or {}
    except Exception:  # noqa: BLE001 - an image gone since create: -P publishes nothing
        pass
    taken = {(m["proto"], m["host"]) for other in state.all() if other["id"] != cid
             and other["status"] == "running" for m in json.loads(other["ports"] or "[]")}
    mappings = ports.assign(ports.expand(spec.get("ports") or [], image_ports,
                                         spec.get("publish_all", False)), taken)
    _nft(ports.rules(mappings, ip, cid[:12]))
    state.update(cid, ports=json.dumps(mappings))


def detach(state: State, cid: str) -> None:
    """Unplug a container from every network; a bridge nobody uses any more goes away."""
    from berth.engine.netlink import Netlink

    db = _db(state)
    nets = [r[0] for r in db.execute("SELECT network FROM endpoints WHERE container=?",
                                     (cid,))]
    try:
        published = state.get(cid)["ports"] not in ("", "[]")
    except EngineError:  # the record is gone already (rm): look at the rules to be sure
        published = True
    if published:
        from berth.engine import ports
        ports.remove_rules(cid[:12])
        state.update(cid, ports="[]")
    db.execute("DELETE FROM endpoints WHERE container=?", (cid,))
    import errno

    def gone(nl, link: str) -> None:
        try:
            nl.delete(link)
        except OSError as e:  # the kernel removes a veth with its namespace: a race to win
            if e.errno != errno.ENODEV:
                raise

    with Netlink() as nl:
        if nl.exists("vb" + cid[:12]):
            gone(nl, "vb" + cid[:12])
        for name in nets:
            left = db.execute("SELECT 1 FROM endpoints WHERE network=?", (name,)).fetchone()
            br = bridge_name(state, name)
            if not left and nl.exists(br):
                gone(nl, br)
                _nft_remove(state, name)


def _ensure_bridge(nl, ep: dict) -> None:
    if nl.exists(ep["Bridge"]):
        return
    nl.add_bridge(ep["Bridge"])
    prefix = ipaddress.ip_network(ep["Subnet"]).prefixlen
    nl.add_address(ep["Bridge"], f"{ep['Gateway']}/{prefix}")
    nl.set_up(ep["Bridge"])
    try:  # published ports answer on 127.0.0.1 too: let loopback-sourced packets out here
        with open(f"/proc/sys/net/ipv4/conf/{ep['Bridge']}/route_localnet", "w") as f:
            f.write("1")
    except OSError:
        pass
    _nft_add(ep)


def _nft(script: str) -> None:
    import subprocess
    try:
        subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True,
                       check=True)
    except FileNotFoundError:
        pass  # no nftables: containers still reach the host and each other
    except subprocess.CalledProcessError as e:
        raise EngineError(f"nftables refused berth's rules: {e.stderr.strip()}") from None


def _nft_add(ep: dict) -> None:
    """Masquerade what leaves the network and keep networks apart, in berth's own table."""
    br = ep["Bridge"]
    _nft("table ip berth {\n"
         " chain postrouting { type nat hook postrouting priority srcnat; policy accept; }\n"
         " chain forward { type filter hook forward priority filter; policy accept; }\n"
         "}\n"
         f"add rule ip berth postrouting ip saddr {ep['Subnet']} oifname != \"{br}\" "
         f"masquerade comment \"{br}\"\n"
         f"add rule ip berth postrouting ip saddr 127.0.0.0/8 oifname \"{br}\" "
         f"masquerade comment \"{br}\"\n"
         f"add rule ip berth forward iifname \"{br}\" oifname != \"{br}\" oifname \"bb-*\" "
         f"drop comment \"{br}\"\n"
         f"add rule ip berth forward iifname \"{br}\" oifname != \"{br}\" oifname \"berth*\" "
         f"drop comment \"{br}\"\n")


def _nft_remove(state: State, name: str) -> None:
    import subprocess
    br = bridge_name(state, name)
    try:
        out = subprocess.run(["nft", "-a", "list", "table", "ip", "berth"],
                             capture_output=True, text=True).stdout
    except FileNotFoundError:
        return
    if not out:
        return  # no table: nothing of ours to remove
    mine = [(line, line.rsplit("# handle ", 1)[1].strip()) for line in out.splitlines()
            if f'comment "{br}"' in line and "# handle " in line]
    chain_of = {}
    current = ""
    for line in out.splitlines():
        if line.strip().startswith("chain "):
            current = line.split()[1]
        chain_of[line] = current
    script = "".join(f"delete rule ip berth {chain_of[line]} handle {h}\n" for line, h in mine)
    others = sum(" comment " in line for line in out.splitlines()) - len(mine)
    if others <= 0:
        script = "delete table ip berth\n"
    _nft(script)


def hosts_file(ip: str | None, hostname: str, peer_list: list[tuple[str, str]]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if ip:
        lines.append(f"{ip}\t{hostname}")
    lines += [f"{p_ip}\t{p_name}" for p_ip, p_name in peer_list]
    return "\n".join(lines) + "\n"
