"""`berth vm ...`: the command line over berth.vm. Parse, call one library function, print.

VMError becomes a message and exit status in exactly one place (VMGroup.invoke).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from berth.vm.errors import VMError


class VMGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VMError as e:
            raise click.ClickException(str(e)) from None


def _store() -> Any:
    from berth.vm.store import Store

    return Store()


def _note(text: str | None) -> None:
    if text:
        click.echo(f"berth: {text}", err=True)


@click.group(cls=VMGroup)
def vm() -> None:
    """Virtual machines on QEMU (KVM or TCG)."""


@vm.command()
@click.argument("name")
@click.option("--cpus", type=int, default=1, show_default=True, help="vCPUs")
@click.option("--memory", "-m", default="512M", show_default=True, help="RAM (512M, 1G)")
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default="auto",
              show_default=True)
@click.option("--machine", type=click.Choice(["q35", "pc"]), default="q35",
              show_default=True)
@click.option("--kernel", help="kernel for direct boot")
@click.option("--initrd", help="initramfs for direct boot")
@click.option("--cmdline", help="kernel command line")
@click.option("--image", help="boot disk image (the VM boots a thin clone of it)")
@click.option("--disk", "disks", multiple=True,
              help="size=1G | path=FILE | from=BASE.qcow2[,size=10G] (repeatable)")
@click.option("--network", "networks", multiple=True,
              help="user[,hostfwd=tcp::2222-:22] | bridge[=NAME] | none (repeatable)")
@click.option("--usb", multiple=True, help="tablet | storage=IMAGE (repeatable)")
@click.option("--cloud-init", "cloud_init", help="user-data file for a NoCloud seed")
@click.option("--overcommit", is_flag=True, help="allow more vCPUs/RAM than the host has")
def create(name: str, **flags: Any) -> None:
    """Define a VM from flags and make its disks (it does not start)."""
    from berth.vm.create import create as do_create
    from berth.vm.definition import from_flags

    spec = from_flags(name, **flags)
    rec = do_create(spec, _store())
    click.echo(rec.name)


@vm.command()
@click.option("-f", "--file", "path", required=True, help="the VM definition (YAML)")
def define(path: str) -> None:
    """Define a VM from a YAML file and make its disks (it does not start)."""
    from berth.vm.create import create as do_create
    from berth.vm.definition import load_yaml

    rec = do_create(load_yaml(path), _store())
    click.echo(rec.name)


@vm.command()
@click.argument("name")
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default=None,
              help="override the definition's accelerator")
@click.option("--wait-for", help="wait until this text appears on the serial console")
@click.option("--timeout", type=float, default=120.0, show_default=True)
def start(name: str, accel: str | None, wait_for: str | None, timeout: float) -> None:
    """Start a VM (qemu runs detached)."""
    from berth.vm.start import start as do_start

    r = do_start(name, _store(), accel=accel, wait_for=wait_for, timeout=timeout)
    _note(r.note)
    click.echo(f"{name} started (pid {r.record.pid}, {r.record.accel})")


@vm.command()
@click.argument("name")
@click.option("--timeout", "-t", type=float, default=30.0, show_default=True,
              help="seconds to wait for the guest to power off before quitting qemu")
def stop(name: str, timeout: float) -> None:
    """Power a VM off (ACPI), then quit qemu after the timeout."""
    from berth.vm.stop import stop as do_stop

    how = do_stop(name, _store(), timeout=timeout)
    click.echo(f"{name} stopped ({how})")


@vm.command()
@click.argument("name")
def kill(name: str) -> None:
    """Kill a VM's qemu at once (SIGKILL)."""
    from berth.vm.stop import kill as do_kill

    do_kill(name, _store())
    click.echo(f"{name} killed")


@vm.command()
@click.argument("name")
@click.option("--timeout", "-t", type=float, default=30.0, show_default=True)
def restart(name: str, timeout: float) -> None:
    """Stop (if running) and start a VM."""
    from berth.vm.start import start as do_start
    from berth.vm.status import refresh
    from berth.vm.stop import stop as do_stop

    store = _store()
    if refresh(store, store.get(name)).status in ("running", "paused"):
        do_stop(name, store, timeout=timeout)
    r = do_start(name, store)
    _note(r.note)
    click.echo(f"{name} restarted (pid {r.record.pid}, {r.record.accel})")


@vm.command()
@click.argument("name")
def pause(name: str) -> None:
    """Freeze a VM's vCPUs."""
    from berth.vm.stop import pause as do_pause

    do_pause(name, _store())


@vm.command()
@click.argument("name")
def resume(name: str) -> None:
    """Let a paused VM run again."""
    from berth.vm.stop import resume as do_resume

    do_resume(name, _store())


@vm.command("ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("-q", "--quiet", is_flag=True, help="names only")
def ls_(fmt: str, quiet: bool) -> None:
    """List VMs (a qemu that died shows stopped)."""
    from berth.vm.ls import ls as do_ls

    vms = do_ls(_store())
    if quiet:
        for v in vms:
            click.echo(v["name"])
    elif fmt == "json":
        click.echo(json.dumps(vms, indent=1))
    else:
        rows = [("NAME", "STATUS", "CPUS", "MEMORY", "DISKS", "ACCEL", "PID")]
        rows += [(v["name"], v["status"], str(v["cpus"]), f"{v['memory_mib']}M",
                  str(v["disks"]), v["accel"] or "-", str(v["pid"] or "-")) for v in vms]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@vm.command()
@click.argument("name")
def inspect(name: str) -> None:
    """Everything about a VM, as JSON."""
    from berth.vm.ls import inspect as do_inspect

    click.echo(json.dumps(do_inspect(name, _store()), indent=1))


@vm.command()
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="kill it first if it runs")
def rm(names: tuple[str, ...], force: bool) -> None:
    """Remove VMs and the disks berth made for them."""
    from berth.vm.rm import rm as do_rm

    store = _store()
    for n in names:
        do_rm(n, store, force=force)
        click.echo(n)


@vm.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True)
@click.option("-n", "--tail", type=int, default=None, help="only the last N lines")
def logs(name: str, follow: bool, tail: int | None) -> None:
    """The VM's serial console log."""
    from berth.vm import logs as vmlogs

    store = _store()
    sys.stdout.write(vmlogs.read(name, store, tail))
    sys.stdout.flush()
    if follow:
        for chunk in vmlogs.follow(name, store):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()


@vm.command()
@click.argument("name")
def console(name: str) -> None:
    """Attach to the serial console (detach with Ctrl-])."""
    from berth.vm.console import attach

    click.echo(f"attached to {name}'s console; detach with Ctrl-]", err=True)
    attach(name, _store())
    click.echo("", err=True)


@vm.command()
@click.argument("name")
def stats(name: str) -> None:
    """vCPUs, balloon, block I/O (QMP) and qemu's RSS and CPU time, as JSON."""
    from berth.vm.stats import stats as do_stats

    click.echo(json.dumps(do_stats(name, _store()), indent=1))


@vm.command()
@click.option("--reprobe", is_flag=True, help="test-boot a KVM guest again")
def host(reprobe: bool) -> None:
    """This host's mode (KVM or TCG), CPU flags, memory and what VMs hold, as JSON."""
    from berth.vm.host import host as do_host

    click.echo(json.dumps(do_host(_store(), reprobe=reprobe), indent=1))


@vm.command("import-libvirt")
@click.argument("path")
@click.option("--name", help="use this name instead of the domain's")
def import_libvirt(path: str, name: str | None) -> None:
    """Define a VM from a libvirt domain XML (the common subset)."""
    from berth.vm.create import create as do_create
    from berth.vm.libvirt import load

    spec, ignored = load(path)
    if name:
        from berth.vm.store import check_name

        spec.name = check_name(name)
    for what in ignored:
        click.echo(f"berth: ignored {what}", err=True)
    click.echo(do_create(spec, _store()).name)


@vm.group()
def snapshot() -> None:
    """qcow2 snapshots: live (QMP) when running, qemu-img when stopped."""


@snapshot.command("create")
@click.argument("name")
@click.argument("tag")
def snapshot_create(name: str, tag: str) -> None:
    from berth.vm.snapshot import create as do

    click.echo(f"{tag} ({do(name, _store(), tag)})")


@snapshot.command("ls")
@click.argument("name")
def snapshot_ls(name: str) -> None:
    from berth.vm.snapshot import ls as do

    for s in do(name, _store()):
        click.echo(f"{s['name']}\t{'live' if s['live'] else 'disk'}")


@snapshot.command("restore")
@click.argument("name")
@click.argument("tag")
def snapshot_restore(name: str, tag: str) -> None:
    from berth.vm.snapshot import restore as do

    do(name, _store(), tag)


@snapshot.command("rm")
@click.argument("name")
@click.argument("tag")
def snapshot_rm(name: str, tag: str) -> None:
    from berth.vm.snapshot import rm as do

    do(name, _store(), tag)


@vm.group()
def disk() -> None:
    """Add or remove disks (hotplug when the VM runs)."""


@disk.command("add")
@click.argument("name")
@click.option("--size", help="a new qcow2 disk of this size (1G)")
@click.option("--path", help="an existing image")
def disk_add(name: str, size: str | None, path: str | None) -> None:
    from berth.vm.definition import parse_size
    from berth.vm.disk import add

    nbytes = parse_size(size, "size", "", "flags") if size else None
    click.echo(add(name, _store(), size=nbytes, path=path))


@disk.command("rm")
@click.argument("name")
@click.argument("device")
def disk_rm(name: str, device: str) -> None:
    from berth.vm.disk import rm as do

    do(name, _store(), device)


@vm.group()
def usb() -> None:
    """Add or remove USB devices (usb-tablet, usb-storage)."""


@usb.command("add")
@click.argument("name")
@click.argument("kind", type=click.Choice(["tablet", "storage"]))
@click.option("--path", help="the image a usb-storage device shows")
def usb_add(name: str, kind: str, path: str | None) -> None:
    from berth.vm.usb import add

    click.echo(add(name, _store(), kind, path))


@usb.command("rm")
@click.argument("name")
@click.argument("device")
def usb_rm(name: str, device: str) -> None:
    from berth.vm.usb import rm as do

    do(name, _store(), device)
