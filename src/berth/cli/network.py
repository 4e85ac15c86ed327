"""`berth network`: create, ls, rm, inspect, connect, disconnect (docker's names and columns)."""

from __future__ import annotations

import json

import click

from berth.cli.container import _engine, each, handled
from berth.cli.format import render, table


@click.group("network")
def network() -> None:
    """Manage networks."""


@network.command("create")
@click.option("--subnet", help="An IPv4 subnet in CIDR form (default: a free /24).")
@click.option("-d", "--driver", default="bridge", show_default=True)
@click.argument("name")
@handled
def create(subnet: str | None, driver: str, name: str) -> None:
    """Create a network."""
    from berth.engine import networks
    from berth.engine.errors import InvalidOption
    if driver != "bridge":
        raise InvalidOption(f"network driver {driver!r} is not supported (bridge only)")
    state, _ = _engine()
    click.echo(networks.create(state, name, subnet)["Id"])


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True)
@click.option("--format", "fmt")
@handled
def ls(quiet: bool, fmt: str | None) -> None:
    """List networks."""
    from berth.engine import networks
    state, _ = _engine()
    rows = [{"ID": net["Id"][:12], "Name": net["Name"], "Driver": "bridge", "Scope": "local"}
            for net in (networks.get(state, n) for n in networks.names(state))]
    rows += [{"ID": "host", "Name": "host", "Driver": "host", "Scope": "local"},
             {"ID": "none", "Name": "none", "Driver": "null", "Scope": "local"}]
    if quiet:
        click.echo("".join(r["ID"] + "\n" for r in rows), nl=False)
    elif fmt:
        click.echo(render(fmt, rows, {"ID": "NETWORK ID"}), nl=False)
    else:
        click.echo(table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                         [[r["ID"], r["Name"], r["Driver"], r["Scope"]] for r in rows]),
                   nl=False)


@network.command("inspect")
@click.argument("names", nargs=-1, required=True)
@handled
def inspect(names: tuple[str, ...]) -> None:
    """Display detailed information on one or more networks."""
    from berth.engine import endpoints, networks
    from berth.engine.errors import EngineError
    state, _ = _engine()
    docs = []
    for n in names:
        net = networks.get(state, n)
        members = {}
        for cid in net["Containers"]:
            try:
                c = state.get(cid)
            except EngineError:
                continue
            ep = endpoints.settings(state, c)["Networks"].get(net["Name"]) or {}
            members[cid] = {"Name": c["name"], "EndpointID": ep.get("EndpointID", ""),
                            "MacAddress": ep.get("MacAddress", ""),
                            "IPv4Address": f"{ep['IPAddress']}/{ep['IPPrefixLen']}"
                            if ep.get("IPAddress") else "", "IPv6Address": ""}
        docs.append({"Name": net["Name"], "Id": net["Id"], "Driver": "bridge", "Scope": "local",
                     "IPAM": {"Driver": "default", "Config": [
                         {"Subnet": net["Subnet"], "Gateway": net["Gateway"]}]},
                     "Options": {"com.docker.network.bridge.name": net["Bridge"]},
                     "Containers": members})
    click.echo(json.dumps(docs, indent=4))


@network.command("rm")
@click.argument("names", nargs=-1, required=True)
@handled
def rm(names: tuple[str, ...]) -> None:
    """Remove one or more networks."""
    from berth.engine import networks
    state, _ = _engine()
    each(names, lambda n: networks.remove(state, n))


@network.command("connect")
@click.option("--alias", "aliases", multiple=True, help="Add a network-scoped alias.")
@click.option("--ip", help="An IPv4 address in the network's subnet.")
@click.argument("name")
@click.argument("ref")
@handled
def connect(aliases: tuple[str, ...], ip: str | None, name: str, ref: str) -> None:
    """Connect a container to a network (at once if it runs, else when it starts)."""
    from berth.engine import endpoints
    state, _ = _engine()
    endpoints.connect(state, name, ref, list(aliases), ip)


@network.command("disconnect")
@click.option("-f", "--force", is_flag=True,
              help="Also the network of its published ports, or a container gone.")
@click.argument("name")
@click.argument("ref")
@handled
def disconnect(force: bool, name: str, ref: str) -> None:
    """Disconnect a container from a network."""
    from berth.engine import endpoints
    state, _ = _engine()
    endpoints.disconnect(state, name, ref, force)
