"""Container networks: a Linux bridge per network, a veth per container, IPAM in SQLite.

`bridge` (docker's default network) and user-defined networks each get a /24
from 10.89.0.0/16 that no host route uses yet, a bridge holding the gateway
address, and berth's own nftables table (`ip berth`) masquerading what leaves
it. A container gets the lowest free address, a veth whose peer is created
directly inside its network namespace as eth0, and /etc/hosts entries for the
containers already on its network. A bridge is made when the first container
joins its network and stays, with its rules, as docker0 does: making and
removing it (and its nftables rules, two `nft` processes) around every lone
container cost ~130 ms a `berth run`. `network rm` takes a user network's
bridge with it; `system prune` the bridges no container uses, and `system
reset` all of them.

A container may be on several networks (engine/endpoints.py: `network
connect`): its first endpoint is eth0 with the default route and the
published ports, the others eth1, eth2, ... An endpoint row lives while the
container runs and carries the aliases the embedded DNS answers for.

Not yet: IPv6.
"""

from __future__ import annotations

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
    ifname TEXT NOT NULL DEFAULT 'eth0',   -- its interface inside the container
    aliases TEXT NOT NULL DEFAULT '[]',    -- JSON: --network-alias / connect --alias
    PRIMARY KEY (container, network),
    UNIQUE (network, ip)
);
"""
DEFAULT = "bridge"
POOL = "10.89.0.0/16"
# (ipaddress and hashlib are imported where they are needed: `berth run` on the default
# bridge needs neither, and they cost it ~5 ms)


def _ip(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return a << 24 | b << 16 | c << 8 | d


def _dotted(n: int) -> str:
    return f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def _subnet(cidr: str) -> tuple[int, int]:
    """(first address, prefix length) of a network in CIDR form, as berth stored it."""
    addr, _, plen = cidr.partition("/")
    return _ip(addr), int(plen)


class NetworkExists(EngineError):
    pass


class NetworkNotFound(EngineError):
    def __init__(self, name: str) -> None:
        super().__init__(f"network {name} not found")


def _db(state: State):
    if not getattr(state, "networks_schema", False):
        from berth import database
        database.ensure(state.db, state.db_path, SCHEMA, (
            ("endpoints", "ifname", "TEXT NOT NULL DEFAULT 'eth0'"),
            ("endpoints", "aliases", "TEXT NOT NULL DEFAULT '[]'")))
        state.networks_schema = True  # type: ignore[attr-defined]
    return state.db


def bridge_name(state: State, name: str) -> str:
    if name == DEFAULT and state.root == "/var/lib/berth":
        return "berth0"
    try:  # Python's own sha256, built in: hashlib loads OpenSSL first (~3 ms)
        from _sha256 import sha256
    except ImportError:  # Python >= 3.12 names it _sha2
        from hashlib import sha256
    return "bb-" + sha256(f"{state.root}\0{name}".encode()).hexdigest()[:10]


def _host_routes() -> list[tuple[str, int, int]]:
    """(interface, first address, prefix length) of each of the host's routes but the
    default one."""
    out = []
    with open("/proc/net/route") as f:
        next(f)
        for line in f:
            fields = line.split()
            mask = int.from_bytes(int(fields[7], 16).to_bytes(4, "little"), "big")
            if mask:
                dest = int.from_bytes(int(fields[1], 16).to_bytes(4, "little"), "big")
                out.append((fields[0], dest, bin(mask).count("1")))
    return out


def _routed_by(cidr: str) -> str | None:
    """The interface of a host route overlapping `cidr`, if one does."""
    first, plen = _subnet(cidr)
    for iface, dest, dest_plen in _host_routes():
        shift = 32 - min(plen, dest_plen)
        if dest >> shift == first >> shift:
            return iface
    return None


def _free_subnet(state: State) -> str:
    import ipaddress
    taken = [ipaddress.ip_network((dest, plen), strict=False)
             for _, dest, plen in _host_routes()]
    taken += [ipaddress.ip_network(r[0]) for r in
              _db(state).execute("SELECT subnet FROM networks")]
    for sub in ipaddress.ip_network(POOL).subnets(new_prefix=24):
        if not any(sub.overlaps(t) for t in taken):
            return str(sub)
    raise EngineError("no free /24 left in 10.89.0.0/16 for a new network")


def create(state: State, name: str, subnet: str | None = None) -> dict:
    import re
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name) or name in ("none", "host"):
        raise InvalidOption(f"invalid network name {name!r}")
    db = _db(state)
    if subnet:
        import ipaddress
        try:
            net = ipaddress.ip_network(subnet)
        except ValueError:
            raise InvalidOption(f"invalid subnet {subnet!r}") from None
        if net.version != 4 or net.prefixlen > 30:
            raise InvalidOption(f"subnet {subnet}: an IPv4 network of /30 or larger is needed")
        subnet = str(net)
    import hashlib
    db.execute("BEGIN IMMEDIATE")  # the name's check, the subnet's pick and the insert: one
    try:
        if db.execute("SELECT 1 FROM networks WHERE name=?", (name,)).fetchone():
            raise NetworkExists(f"network with name {name} already exists")
        db.execute("INSERT INTO networks VALUES (?,?,?,?)",
                   (name, hashlib.sha256(f"{name}{time.time()}".encode()).hexdigest(),
                    subnet or _free_subnet(state), time.time()))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return get(state, name)


def get(state: State, name: str) -> dict:
    row = _db(state).execute("SELECT name, id, subnet, created FROM networks WHERE name=? OR "
                             "id LIKE ?", (name, name + "%")).fetchone()
    if row is None:
        if name != DEFAULT:
            raise NetworkNotFound(name)
        try:  # the default network is made on first use
            return create(state, DEFAULT)
        except NetworkExists:  # by a concurrent command, just now
            return get(state, DEFAULT)
    return {"Name": row[0], "Id": row[1], "Subnet": row[2],
            "Gateway": _dotted(_subnet(row[2])[0] + 1),
            "Bridge": bridge_name(state, row[0]), "Created": row[3],
            "Containers": [r[0] for r in _db(state).execute(
                "SELECT container FROM endpoints WHERE network=?", (row[0],))]}


def names(state: State) -> list[str]:
    get(state, DEFAULT)
    return [r[0] for r in _db(state).execute("SELECT name FROM networks ORDER BY name")]


def remove(state: State, name: str) -> None:
    """Remove a user network, its bridge and its rules (not while containers use it)."""
    if name == DEFAULT:
        raise EngineError("bridge is a pre-defined network and cannot be removed")
    net = get(state, name)
    if net["Containers"]:
        raise EngineError(f"network {name} has active endpoints")
    teardown(state, net["Name"])
    _db(state).execute("DELETE FROM networks WHERE name=?", (net["Name"],))


def teardown(state: State, name: str) -> bool:
    """Remove a network's bridge and nftables rules if they are there (the network
    stays: the next container to join makes them again). Return whether anything was."""
    from berth.engine.netlink import Netlink
    br = bridge_name(state, name)
    with Netlink() as nl:
        if not nl.exists(br):
            return False
        nl.delete(br)
    _nft_remove(state, name)
    return True


def prune_bridges(state: State) -> list[str]:
    """Tear down the bridges no container uses (`system prune`); return their networks."""
    db = _db(state)
    used = {r[0] for r in db.execute("SELECT DISTINCT network FROM endpoints")}
    return [n for (n,) in db.execute("SELECT name FROM networks").fetchall()
            if n not in used and teardown(state, n)]


# --- containers -----------------------------------------------------------------


def allocate(state: State, cid: str, name: str, ip: str | None = None,
             aliases: list[str] | None = None, ifname: str = "eth0") -> dict:
    """Reserve an address of the network for a container: `ip`, or the lowest free one."""
    from berth.engine.netlink import link_exists
    from berth.oci import jsonfast as json
    net = get(state, name)
    db = _db(state)
    row = db.execute("SELECT ip, ifname, aliases FROM endpoints WHERE container=? AND "
                     "network=?", (cid, net["Name"])).fetchone()
    if row:
        return {**net, "IP": row[0], "IfName": row[1], "Aliases": json.loads(row[2])}
    if ip is not None:
        check_ip(net, ip)
    db.execute("BEGIN IMMEDIATE")  # concurrent starts must not pick the same address
    try:
        used = {r[0] for r in db.execute("SELECT ip FROM endpoints WHERE network=?",
                                         (net["Name"],))}
        if not used and not link_exists(net["Bridge"]):  # its first container: check
            other = _routed_by(net["Subnet"])  # another berth root's bridge, say
            if other is not None:
                if net["Name"] != DEFAULT:
                    raise EngineError(f"network {net['Name']}: its subnet {net['Subnet']} is "
                                      f"already routed on this host (via {other}); remove the "
                                      "network and create it with another --subnet")
                subnet = _free_subnet(state)  # the default network simply moves
                db.execute("UPDATE networks SET subnet=? WHERE name=?", (subnet, net["Name"]))
                net = {**net, "Subnet": subnet, "Gateway": _dotted(_subnet(subnet)[0] + 1)}
        if ip is not None:
            if ip in used:
                raise EngineError(f"address {ip} is already in use on network {net['Name']}")
            free = [ip]
        else:
            first, plen = _subnet(net["Subnet"])
            hosts = (_dotted(first + i) for i in range(2, (1 << (32 - plen)) - 1))  # after gw
            free = [h for h in hosts if h not in used][:1]
        if not free:
            raise EngineError(f"network {name} has no free address left")
        db.execute("INSERT INTO endpoints VALUES (?,?,?,?,?)", (cid, net["Name"], free[0], ifname,
                                                                json.dumps(aliases or [])))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return {**net, "IP": free[0], "IfName": ifname, "Aliases": list(aliases or [])}


def check_ip(net: dict, ip: str) -> None:
    """An address a container may be given on `net` (not its gateway, network or broadcast)."""
    import ipaddress
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        raise InvalidOption(f"invalid IPv4 address {ip!r}") from None
    subnet = ipaddress.ip_network(net["Subnet"])
    if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
        raise InvalidOption(f"address {ip} is not a host address of network {net['Name']} "
                            f"({net['Subnet']})")
    if ip == net["Gateway"]:
        raise InvalidOption(f"address {ip} is the gateway of network {net['Name']}")


def host_end(cid: str, ifname: str) -> str:
    """The host's end of a container's veth (15 characters at most; 'x' is not hex)."""
    return "vb" + cid[:12] if ifname == "eth0" else f"vb{cid[:10]}x{ifname[3:]}"


def peers(state: State, cid: str, name: str) -> list[tuple[str, str]]:
    """(ip, container name) of the other containers on the network."""
    rows = _db(state).execute("SELECT e.ip, c.name FROM endpoints e JOIN containers c ON "
                              "c.id = e.container WHERE e.network=? AND e.container != ?",
                              (name, cid)).fetchall()
    return [(r[0], r[1]) for r in rows]


def attach(state: State, cid: str, pid: int, name: str, primary: bool = True,
           ip: str | None = None, aliases: list[str] | None = None,
           ifname: str = "eth0") -> dict:
    """Plug container `cid` (init `pid`) into the network: veth, address, and for its
    primary network the default route and published ports. A failure leaves nothing."""
    from berth.engine.netlink import Netlink, in_netns

    ep = allocate(state, cid, name, ip, aliases, ifname)
    ifname = ep["IfName"]
    prefix = _subnet(ep["Subnet"])[1]
    outside = host_end(cid, ifname)
    mac = "02:42:" + ":".join(f"{int(b):02x}" for b in ep["IP"].split("."))
    made_bridge = False
    try:
        with Netlink() as nl:
            made_bridge = _ensure_bridge(nl, ep)
            if nl.exists(outside):
                nl.delete(outside)
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                nl.add_veth(outside, ifname + "b", fd)
            finally:
                os.close(fd)
            nl.set_master(outside, ep["Bridge"])
            nl.set_up(outside)

        def inside(nl):
            nl.rename(ifname + "b", ifname)
            nl.set_mac(ifname, mac)
            nl.add_address(ifname, f"{ep['IP']}/{prefix}")
            nl.set_up(ifname)
            if primary:
                nl.add_default_route(ep["Gateway"], ifname)

        in_netns(f"/proc/{pid}/ns/net", inside)
        if primary:
            publish(state, cid, ep["IP"])
    except BaseException:
        unplug(state, cid, ep["Name"])
        if made_bridge and not _db(state).execute("SELECT 1 FROM endpoints WHERE network=?",
                                                  (ep["Name"],)).fetchone():
            teardown(state, ep["Name"])  # made for this container alone: undo it too
        raise
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
    """Unplug a container from every network (its bridges stay for the next one)."""
    _unplug(state, cid, None)


def unplug(state: State, cid: str, name: str) -> None:
    """Unplug a container from one network (`network disconnect`, a failed connect)."""
    _unplug(state, cid, name)


def _unplug(state: State, cid: str, only: str | None) -> None:
    db = _db(state)
    rows = db.execute("SELECT network, ifname FROM endpoints WHERE container=?",
                      (cid,)).fetchall()
    rows = [(n, i) for n, i in rows if only is None or n == only]
    try:
        published = state.get(cid)["ports"] not in ("", "[]")
    except EngineError:  # the record is gone already (rm): look at the rules to be sure
        published = True
    if not rows and not published and only is None:
        return  # never plugged (--network none, host, or a stopped container's second call)
    if published and (only is None or any(i == "eth0" for _, i in rows)):
        from berth.engine import ports
        ports.remove_rules(cid[:12])
        try:
            state.update(cid, ports="[]")
        except EngineError:
            pass
    if only is None:
        db.execute("DELETE FROM endpoints WHERE container=?", (cid,))
    else:
        db.execute("DELETE FROM endpoints WHERE container=? AND network=?", (cid, only))
    import errno

    from berth.engine.netlink import Netlink

    def gone(nl, link: str) -> None:
        try:
            nl.delete(link)
        except OSError as e:  # the kernel removes a veth with its namespace: a race to win
            if e.errno != errno.ENODEV:
                raise

    if only is None and not _namespace_shared(state):
        # the container is gone, and its network namespace with it: the kernel removes
        # the veths as it frees the namespace, in the background. Deleting one here
        # waits for an RCU grace period in unregister_netdevice: ~20 ms of `run --rm`
        return
    with Netlink() as nl:
        ends = {host_end(cid, i) for _, i in rows}
        if only is None:
            ends.add(host_end(cid, "eth0"))
        for end in sorted(ends):
            if nl.exists(end):
                gone(nl, end)


def _namespace_shared(state: State) -> bool:
    """Might a container's network namespace outlive it? Yes while any container that
    joined another's (--network container:X) runs: its veth must go by hand, or its
    address, free again, could be handed out twice."""
    return state.db.execute(
        "SELECT 1 FROM containers WHERE status='running' AND (spec LIKE ? OR spec LIKE ?)",
        ('%"network":"container:%', '%"network": "container:%')).fetchone() is not None


def _ensure_bridge(nl, ep: dict) -> bool:
    """Make the network's bridge and rules unless they are there; return whether made."""
    if nl.exists(ep["Bridge"]):
        return False
    import errno
    try:
        nl.add_bridge(ep["Bridge"])
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
        return False  # a concurrent start made it between our look and our make
    # a bridge without an address of its own takes the lowest of its ports', so a
    # container joining could change the gateway's MAC under the others' ARP caches
    nl.set_mac(ep["Bridge"], "02:42:" + ":".join(f"{int(b):02x}" for b in
                                                 ep["Gateway"].split(".")))
    prefix = _subnet(ep["Subnet"])[1]
    nl.add_address(ep["Bridge"], f"{ep['Gateway']}/{prefix}")
    nl.set_up(ep["Bridge"])
    try:  # published ports answer on 127.0.0.1 too: let loopback-sourced packets out here
        with open(f"/proc/sys/net/ipv4/conf/{ep['Bridge']}/route_localnet", "w") as f:
            f.write("1")
    except OSError:
        pass
    _nft_add(ep)
    return True


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
