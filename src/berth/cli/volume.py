"""`berth volume`: create, ls, rm, inspect, prune (docker's names and columns)."""

from __future__ import annotations

import json
import sys

import click

from berth.cli.container import handled
from berth.cli.format import render, table


def _root() -> str:
    from berth.engine.state import berth_root
    return berth_root()


@click.group("volume")
def volume() -> None:
    """Manage volumes."""


@volume.command("create")
@click.option("-l", "--label", multiple=True)
@click.argument("name", required=False)
@handled
def create(label: tuple[str, ...], name: str | None) -> None:
    """Create a volume."""
    from berth.engine import volumes
    click.echo(volumes.create(_root(), name, dict(x.partition("=")[::2] for x in label)))


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True)
@click.option("--format", "fmt")
@handled
def ls(quiet: bool, fmt: str | None) -> None:
    """List volumes."""
    from berth.engine import volumes
    rows = [{"Driver": "local", "Name": n} for n in volumes.names(_root())]
    if quiet:
        click.echo("".join(r["Name"] + "\n" for r in rows), nl=False)
    elif fmt:
        click.echo(render(fmt, rows), nl=False)
    else:
        click.echo(table(["DRIVER", "VOLUME NAME"], [[r["Driver"], r["Name"]] for r in rows]),
                   nl=False)


@volume.command("inspect")
@click.argument("names", nargs=-1, required=True)
@handled
def inspect(names: tuple[str, ...]) -> None:
    """Display detailed information on one or more volumes."""
    from berth.engine import volumes
    click.echo(json.dumps([volumes.inspect(_root(), n) for n in names], indent=4))


def _in_use() -> set[str]:
    from berth.engine.containers import volumes_in_use
    from berth.engine.state import State
    return volumes_in_use(State())


@volume.command("rm")
@click.option("-f", "--force", is_flag=True)
@click.argument("names", nargs=-1, required=True)
@handled
def rm(force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more volumes."""
    from berth.engine import volumes
    from berth.engine.errors import EngineError
    failed = False
    in_use = _in_use()
    for n in names:
        try:
            volumes.remove(_root(), n, in_use)
            click.echo(n)
        except EngineError as e:
            if not (force and isinstance(e, volumes.VolumeNotFound)):
                click.echo(f"Error: {e}", err=True)
                failed = True
    if failed:
        sys.exit(1)


@volume.command("prune")
@click.option("-f", "--force", is_flag=True)
@click.option("-a", "--all", "all_", is_flag=True, help="Remove named volumes too.")
@handled
def prune(force: bool, all_: bool) -> None:
    """Remove unused volumes (anonymous ones; with --all, named ones too)."""
    from berth.engine import volumes
    in_use = _in_use()
    removed = []
    for n in volumes.names(_root()):
        anonymous = len(n) == 64 and all(ch in "0123456789abcdef" for ch in n)
        if n not in in_use and (all_ or anonymous):
            volumes.remove(_root(), n, in_use)
            removed.append(n)
    if removed:
        click.echo("Deleted Volumes:\n" + "".join(r + "\n" for r in removed), nl=False)
    click.echo("Total reclaimed space: 0B")
