"""`berth version`, `berth info` and `berth system` (info, df, prune), shaped like docker's."""

from __future__ import annotations

import os
import platform
import sys

import click

from berth.cli.container import _engine, handled
from berth.cli.format import human_size, render, table


def _disk_usage(path: str) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for f in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def version_doc() -> dict:
    from berth import __version__
    from berth.runtime.state import OCI_VERSION
    return {
        "Client": {"Version": __version__, "Os": "linux", "Arch": _arch(),
                   "PythonVersion": platform.python_version()},
        "Server": {"Engine": "berth (daemonless)", "Version": __version__,
                   "Runtime": f"berth-runtime {__version__} (OCI runtime spec {OCI_VERSION})",
                   "KernelVersion": platform.release()},
    }


@click.command("version")
@click.option("-f", "--format", "fmt")
@handled
def version(fmt: str | None) -> None:
    """Show the berth version information."""
    doc = version_doc()
    if fmt:
        click.echo(render(fmt, [doc]), nl=False)
        return
    c, s = doc["Client"], doc["Server"]
    click.echo(f"Client:\n Version:           {c['Version']}\n Python version:    "
               f"{c['PythonVersion']}\n OS/Arch:           {c['Os']}/{c['Arch']}\n\n"
               f"Server: {s['Engine']}\n Version:           {s['Version']}\n Runtime:           "
               f"{s['Runtime']}\n Kernel:            {s['KernelVersion']}")


def info_doc() -> dict:
    from berth.engine import containers
    from berth.runtime.cgroups import is_unified
    state, store = _engine()
    cs = containers.list_containers(state, all_=True)
    running = [c for c in cs if c["status"] == "running"]
    paused = [c for c in running if c.get("paused")]
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    os_name = "Linux"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {
        "Containers": len(cs), "ContainersRunning": len(running) - len(paused),
        "ContainersPaused": len(paused), "ContainersStopped": len(cs) - len(running),
        "Images": len(list(store.images())), "Driver": "overlay",
        "CgroupDriver": "cgroupfs", "CgroupVersion": "2" if is_unified() else "1",
        "DefaultRuntime": "berth-runtime", "KernelVersion": platform.release(),
        "OperatingSystem": os_name, "OSType": "linux", "Architecture": platform.machine(),
        "NCPU": os.cpu_count(), "MemTotal": mem, "DockerRootDir": state.root,
        "Name": platform.node(), "ServerVersion": version_doc()["Server"]["Version"],
    }


@click.command("info")
@click.option("-f", "--format", "fmt")
@handled
def info(fmt: str | None) -> None:
    """Display system-wide information."""
    doc = info_doc()
    if fmt:
        click.echo(render(fmt, [doc]), nl=False)
        return
    lines = [
        f"Containers: {doc['Containers']}", f" Running: {doc['ContainersRunning']}",
        f" Paused: {doc['ContainersPaused']}", f" Stopped: {doc['ContainersStopped']}",
        f"Images: {doc['Images']}", f"Server Version: {doc['ServerVersion']}",
        f"Storage Driver: {doc['Driver']}", f"Cgroup Driver: {doc['CgroupDriver']}",
        f"Cgroup Version: {doc['CgroupVersion']}", f"Default Runtime: {doc['DefaultRuntime']}",
        f"Kernel Version: {doc['KernelVersion']}", f"Operating System: {doc['OperatingSystem']}",
        f"OSType: {doc['OSType']}", f"Architecture: {doc['Architecture']}",
        f"CPUs: {doc['NCPU']}", f"Total Memory: {doc['MemTotal'] / (1 << 30):.2f}GiB",
        f"Name: {doc['Name']}", f"Docker Root Dir: {doc['DockerRootDir']}",
    ]
    click.echo("\n".join(lines))


@click.group("system")
def system() -> None:
    """Manage berth."""


system.add_command(info)


@system.command("df")
@click.option("--format", "fmt")
@handled
def df(fmt: str | None) -> None:
    """Show berth disk usage."""
    from berth.engine import containers, volumes
    state, store = _engine()
    imgs = list(store.images())
    cs = containers.list_containers(state, all_=True)
    used_images = {c["image_id"] for c in cs}
    img_size = sum(i["size"] for i in imgs)
    img_free = sum(i["size"] for i in imgs if i["id"] not in used_images)
    c_sizes = {c["id"]: _disk_usage(os.path.join(state.dir(c["id"]), "upper")) for c in cs}
    c_free = sum(s for cid, s in c_sizes.items()
                 if next(c for c in cs if c["id"] == cid)["status"] != "running")
    in_use = containers.volumes_in_use(state)
    vols = volumes.names(state.root)
    v_sizes = {v: _disk_usage(volumes.path(state.root, v)) for v in vols}
    rows = [
        {"Type": "Images", "TotalCount": len(imgs), "Active": len(used_images & {i["id"] for i in
                                                                             imgs}),
         "Size": human_size(img_size), "Reclaimable": human_size(img_free)},
        {"Type": "Containers", "TotalCount": len(cs),
         "Active": sum(c["status"] == "running" for c in cs),
         "Size": human_size(sum(c_sizes.values())), "Reclaimable": human_size(c_free)},
        {"Type": "Local Volumes", "TotalCount": len(vols), "Active": len(set(vols) & in_use),
         "Size": human_size(sum(v_sizes.values())),
         "Reclaimable": human_size(sum(s for v, s in v_sizes.items() if v not in in_use))},
        {"Type": "Build Cache", "TotalCount": 0, "Active": 0, "Size": "0B",
         "Reclaimable": "0B"},
    ]
    if fmt:
        click.echo(render(fmt, rows), nl=False)
        return
    click.echo(table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
                     [[r["Type"], str(r["TotalCount"]), str(r["Active"]), r["Size"],
                       r["Reclaimable"]] for r in rows]), nl=False)


@system.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images too.")
@click.option("--volumes", is_flag=True, help="Prune anonymous volumes.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@handled
def prune(all_: bool, volumes: bool, force: bool) -> None:
    """Remove stopped containers, unused images (dangling; with -a all) and their layers,
    and the bridges (with their rules) of networks no container uses."""
    from berth.engine import containers
    from berth.engine import volumes as vol
    if not force and sys.stdin.isatty():
        click.confirm("This will remove all stopped containers and dangling images. Continue?",
                      abort=True)
    state, store = _engine()
    removed_c = containers.prune(state)
    used = {c["image_id"] for c in containers.list_containers(state, all_=True)}
    removed_i = []
    for img in list(store.images()):
        if img["id"] not in used and (all_ or not store.names(img["id"])):
            store.remove_image(img["id"], force=True)
            removed_i.append(img["id"])
    removed_v = []
    if volumes:
        in_use = containers.volumes_in_use(state)
        for n in vol.names(state.root):
            if n not in in_use and len(n) == 64:
                vol.remove(state.root, n, in_use)
                removed_v.append(n)
    _, freed = store.prune()
    from berth.engine import networks
    removed_n = networks.prune_bridges(state)  # their networks stay, to be used again
    for title, items in (("Deleted Containers", removed_c), ("Deleted Images", removed_i),
                         ("Deleted Volumes", removed_v), ("Deleted Bridges", removed_n)):
        if items:
            click.echo(f"{title}:\n" + "".join(f"{i}\n" for i in items))
    click.echo(f"Total reclaimed space: {human_size(freed)}")




@system.command("reset")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@handled
def reset(force: bool) -> None:
    """Remove every container, image, volume and network, and berth's bridges and rules."""
    from berth.engine import containers, networks
    from berth.engine import volumes as vol
    if not force:
        click.confirm("WARNING! This will remove:\n - all containers\n - all images\n"
                      " - all volumes\n - all networks (and their bridges and nftables rules)\n"
                      "Are you sure you want to continue?", abort=True)
    state, store = _engine()
    for c in state.all():
        containers.remove(state, c["id"], force=True, volumes=True)
    for name in networks.names(state):
        if name != networks.DEFAULT:
            networks.remove(state, name)
    networks.teardown(state, networks.DEFAULT)
    for name in vol.names(state.root):
        vol.remove(state.root, name, set())
    for img in list(store.images()):
        store.remove_image(img["id"], force=True)
    store.prune()


@system.command("check")
@click.option("--repair", is_flag=True, help="Fix what is found.")
@handled
def check(repair: bool) -> None:
    """Report (and with --repair, fix) records that disagree with the host."""
    from berth.engine import containers
    state, _ = _engine()
    found = containers.check(state, repair)
    for f in found:
        click.echo(("repaired: " if repair else "") + f)
    if not found:
        click.echo("no inconsistencies found")
    elif not repair:
        sys.exit(1)
