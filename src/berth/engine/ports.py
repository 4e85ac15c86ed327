"""Published ports (-p, -P): DNAT rules in berth's nftables table, in the kernel.

A rule in a `prerouting` chain takes traffic arriving for the host's port,
one in `output` takes the host's own connections (127.0.0.1:PORT too: the
bridge gets route_localnet and what leaves it from 127.0.0.0/8 is
masqueraded), and both send it to the container's address. Rules carry the
container's short id as a comment and go when it stops. No process stays
behind to proxy, so ports work as long as the container runs, supervisor or
not.
"""

from __future__ import annotations

import _socket  # socket itself costs `berth run` ~3 ms (enum, selectors); only inet_aton is used

from berth.engine.errors import EngineError, InvalidOption

EPHEMERAL = (32768, 60999)


def parse(text: str) -> dict:
    """-p [ip:][hostPort:]containerPort[/proto] (ports may be ranges a-b of equal length)."""
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidOption(f"-p {text}: protocol must be tcp or udp")
    parts = spec.rsplit(":", 2)
    ip, host, ctr = "", "", parts[-1]
    if len(parts) == 3:
        ip, host = parts[0], parts[1]
    elif len(parts) == 2:
        host = parts[0]
    if ip:
        try:
            _socket.inet_aton(ip)
        except OSError:
            raise InvalidOption(f"-p {text}: {ip!r} is not an IPv4 address") from None
    ctr_ports = _range(ctr, text)
    host_ports = _range(host, text) if host else [0] * len(ctr_ports)
    if len(host_ports) != len(ctr_ports):
        raise InvalidOption(f"-p {text}: the host and container ranges differ in length")
    return {"ip": ip, "proto": proto,
            "pairs": list(zip(host_ports, ctr_ports, strict=True))}


def _range(text: str, whole: str) -> list[int]:
    lo, _, hi = text.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()):
        raise InvalidOption(f"-p {whole}: {text!r} is not a port or a range of ports")
    a, b = int(lo), int(hi or lo)
    if not (0 < a <= b <= 65535):
        raise InvalidOption(f"-p {whole}: ports must be within 1-65535")
    return list(range(a, b + 1))


def expand(published: list[dict], exposed: dict | None, publish_all: bool) -> list[dict]:
    """One mapping per port: {ip, proto, host, container}; -P adds the image's EXPOSE."""
    out = []
    for p in published:
        for host, ctr in p["pairs"]:
            out.append({"ip": p["ip"], "proto": p["proto"], "host": host, "container": ctr})
    if publish_all:
        for key in exposed or {}:
            port, _, proto = key.partition("/")
            if not any(m["container"] == int(port) and m["proto"] == (proto or "tcp")
                       for m in out):
                out.append({"ip": "", "proto": proto or "tcp", "host": 0,
                            "container": int(port)})
    return out


def _listening(proto: str) -> set[int]:
    ports = set()
    for path in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if proto == "udp" or fields[3] == "0A":  # 0A: LISTEN
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            pass
    return ports


def assign(mappings: list[dict], taken: set[tuple[str, int]]) -> list[dict]:
    """Pick free host ports for the 0s; refuse ports in use (by berth or a listener)."""
    import random
    out = []
    for m in mappings:
        busy = {p for proto, p in taken if proto == m["proto"]} | _listening(m["proto"])
        if m["host"] == 0:
            for _ in range(1000):
                cand = random.randint(*EPHEMERAL)
                if cand not in busy:
                    m = {**m, "host": cand}
                    break
            else:
                raise EngineError("no free host port left for -P")
        elif m["host"] in busy:
            raise EngineError(f"Bind for {m['ip'] or '0.0.0.0'}:{m['host']} failed: port is "
                              "already allocated")
        taken = taken | {(m["proto"], m["host"])}
        out.append(m)
    return out


def rules(mappings: list[dict], container_ip: str, tag: str) -> str:
    """nft commands adding the DNAT rules for one container."""
    script = ("table ip berth {\n"
              " chain prerouting { type nat hook prerouting priority dstnat; policy accept; }\n"
              " chain output { type nat hook output priority -100; policy accept; }\n"
              "}\n")
    for m in mappings:
        match = f"ip daddr {m['ip']} " if m["ip"] and m["ip"] != "0.0.0.0" else \
            "fib daddr type local "
        for chain in ("prerouting", "output"):
            script += (f"add rule ip berth {chain} {match}{m['proto']} dport {m['host']} "
                       f"dnat to {container_ip}:{m['container']} comment \"{tag}\"\n")
    return script


def remove_rules(tag: str) -> None:
    import subprocess
    try:
        out = subprocess.run(["nft", "-a", "list", "table", "ip", "berth"],
                             capture_output=True, text=True).stdout
    except FileNotFoundError:
        return
    chain = ""
    script = ""
    for line in out.splitlines():
        if line.strip().startswith("chain "):
            chain = line.split()[1]
        elif f'comment "{tag}"' in line and "# handle " in line:
            script += f"delete rule ip berth {chain} handle {line.rsplit('# handle ', 1)[1]}\n"
    if script:
        subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True)


def describe(m: dict) -> str:
    """docker ps's PORTS form: 0.0.0.0:8080->80/tcp"""
    return f"{m['ip'] or '0.0.0.0'}:{m['host']}->{m['container']}/{m['proto']}"
