"""A container's place on networks: `network connect`, `network disconnect`, and the
NetworkSettings of `inspect`.

Which networks a container is on is part of its spec (`networks`: name ->
aliases and the address asked for, in order; spec.endpoints_of), so it
survives restarts, as docker's. Connecting a running container also plugs the
new interface into its network namespace at once (networks.attach: a veth on
the network's bridge, the next ethN inside, an address from the network's
IPAM); connecting a created or stopped one is recorded and applied at its next
start. Disconnecting unplugs the interface and forgets the network, and the
embedded DNS stops answering for the container there (it reads the live
endpoints). A connect that fails leaves neither an interface nor an address.
"""

from __future__ import annotations

import hashlib
import ipaddress

from berth.engine import networks
from berth.engine.errors import ContainerNotFound, EngineError, InvalidOption
from berth.engine.spec import bridged, check_aliases, endpoints_of
from berth.engine.state import State
from berth.oci import jsonfast as json


def _key(state: State, wanted: dict[str, dict], net: dict) -> str | None:
    """The name under which the spec lists network `net` (as the user gave it), or None."""
    for name in wanted:
        if name == net["Name"]:
            return name
        try:
            if networks.get(state, name)["Name"] == net["Name"]:
                return name
        except networks.NetworkNotFound:
            continue
    return None


def connect(state: State, net_ref: str, ref: str, aliases: list[str] | None = None,
            ip: str | None = None) -> None:
    """Put container `ref` on network `net_ref` (now if it runs, else at its next start)."""
    from berth.engine import containers
    net = networks.get(state, net_ref)
    c = containers.get(state, ref)
    spec = json.loads(c["spec"])
    mode = spec.get("network", "none")
    if not bridged(mode):
        raise EngineError(f"container {c['name']} runs with --network {mode}: it cannot be "
                          "connected to other networks")
    aliases = check_aliases(list(aliases or []))
    if aliases and net["Name"] == networks.DEFAULT:
        raise InvalidOption("--alias: network-scoped aliases are supported only for "
                            "user-defined networks")
    if ip is not None:
        networks.check_ip(net, ip)
    wanted = endpoints_of(spec)
    if _key(state, wanted, net) is not None:
        raise EngineError(f"container {c['name']} is already connected to network "
                          f"{net['Name']}")
    if c["status"] == "running":
        live = {r[0] for r in networks._db(state).execute(
            "SELECT ifname FROM endpoints WHERE container=?", (c["id"],))}
        ifname = next(f"eth{i}" for i in range(len(live) + 1) if f"eth{i}" not in live)
        try:
            networks.attach(state, c["id"], c["pid"], net["Name"], primary=False, ip=ip,
                            aliases=aliases, ifname=ifname)
        except OSError as e:  # attach took back what it had done
            import re
            why = re.sub(r"^\[Errno \d+\] ", "", str(e.strerror or e))
            raise EngineError(f"cannot connect container {c['name']} to network "
                              f"{net['Name']} as {ifname}: {why}") from None
        try:
            if net["Name"] != networks.DEFAULT:  # the supervisor answers DNS on it
                from berth.engine.client import request
                request(state.root, {"op": "dns", "network": net["Name"]})
        except BaseException:
            networks.unplug(state, c["id"], net["Name"])
            raise
    wanted[net["Name"]] = {"aliases": aliases, "ip": ip}
    spec["networks"] = wanted
    state.update(c["id"], spec=json.dumps(spec))


def disconnect(state: State, net_ref: str, ref: str, force: bool = False) -> None:
    """Take container `ref` off network `net_ref`: unplug it if it runs, and forget it.

    `force` also takes the network that carries the container's published ports, and
    the endpoints of a container whose record is gone."""
    from berth.engine import containers
    net = networks.get(state, net_ref)
    try:
        c = containers.get(state, ref)
    except ContainerNotFound:
        if not force:
            raise
        gone = [r[0] for r in networks._db(state).execute(
            "SELECT container FROM endpoints WHERE network=? AND container LIKE ?",
            (net["Name"], ref + "%"))]
        if len(gone) != 1:
            raise
        networks.unplug(state, gone[0], net["Name"])
        return
    spec = json.loads(c["spec"])
    wanted = endpoints_of(spec)
    key = _key(state, wanted, net)
    if key is None:
        raise EngineError(f"container {c['name']} is not connected to network {net['Name']}")
    row = networks._db(state).execute("SELECT ifname FROM endpoints WHERE container=? AND "
                                      "network=?", (c["id"], net["Name"])).fetchone()
    if row is not None and row[0] == "eth0" and c["ports"] not in ("", "[]") and not force:
        raise EngineError(f"container {c['name']} publishes its ports (-p) through network "
                          f"{net['Name']}: stop it first, or use --force to drop them")
    if row is not None:
        networks.unplug(state, c["id"], net["Name"])
    del wanted[key]
    spec["networks"] = wanted
    state.update(c["id"], spec=json.dumps(spec))


def settings(state: State, c: dict) -> dict:
    """docker inspect's NetworkSettings: each network with its live address, if running."""
    spec = json.loads(c["spec"])
    running = c["status"] == "running"
    live = {r[0]: (r[1], json.loads(r[2])) for r in networks._db(state).execute(
        "SELECT network, ip, aliases FROM endpoints WHERE container=?", (c["id"],))} \
        if running else {}
    out: dict = {}
    top: dict[str, object] = dict.fromkeys(("EndpointID", "Gateway", "GlobalIPv6Address",
                                            "IPAddress", "IPv6Gateway", "MacAddress"), "")
    top.update(GlobalIPv6PrefixLen=0, IPPrefixLen=0)
    mode = spec.get("network", "none")
    wanted = endpoints_of(spec) if bridged(mode) else \
        {} if mode.startswith("container:") else {mode: {}}  # docker lists none and host
    for name, cfg in wanted.items():
        try:
            net: dict | None = networks.get(state, name)
        except networks.NetworkNotFound:
            net = None
        key = net["Name"] if net else name
        user = key not in (networks.DEFAULT, "none", "host")
        aliases = (list(cfg.get("aliases") or []) + [c["id"][:12]]) if user else None
        ipam = {"IPv4Address": cfg["ip"]} if cfg.get("ip") else None
        entry: dict[str, object] = {
            "IPAMConfig": ipam, "Links": None, "Aliases": aliases, "MacAddress": "",
            "DriverOpts": None, "NetworkID": "", "EndpointID": "", "Gateway": "",
            "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DNSNames": None}
        if net is not None and key in live:
            ip = live[key][0]
            entry.update(
                MacAddress="02:42:" + ":".join(f"{int(b):02x}" for b in ip.split(".")),
                NetworkID=net["Id"], Gateway=net["Gateway"], IPAddress=ip,
                IPPrefixLen=ipaddress.ip_network(net["Subnet"]).prefixlen,
                EndpointID=hashlib.sha256(f"{c['id']}\0{key}\0{ip}".encode()).hexdigest(),
                DNSNames=[c["name"], *live[key][1], c["id"][:12]] if user else None)
            if not user:  # docker fills the top-level fields from the default bridge only
                top.update({k: entry[k] for k in top})
        out[key] = entry
    ports: dict = {}
    for m in json.loads(c.get("ports") or "[]") if running else []:
        ports.setdefault(f"{m['container']}/{m['proto']}", []).append(
            {"HostIp": m.get("ip") or "0.0.0.0", "HostPort": str(m["host"])})
    return {"Bridge": "", "SandboxID": "", "SandboxKey": f"/proc/{c['pid']}/ns/net"
            if running and bridged(spec.get("network", "none")) else "",
            "Ports": ports, "HairpinMode": False, "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None, **top, "Networks": out}
