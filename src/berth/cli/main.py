"""`berth`: the entry point and its command groups.

`berth runtime ...` hands its arguments untouched to the OCI runtime's own
parser (berth-runtime), before click is even imported, so the runtime verbs
cost the same through either name. Other groups live one module each in
berth/cli/ and are imported only when their command is used (GROUPS below).
"""

from __future__ import annotations

import sys

# command -> (module, attribute, one-line help); each module defines a click group/command
GROUPS: dict[str, tuple[str, str, str]] = {
    "vm": ("berth.cli.vm", "vm", "Virtual machines on QEMU (KVM or TCG)."),
    "image": ("berth.cli.image", "image", "Manage images."),
    "images": ("berth.cli.image", "images", "List images."),
    "rmi": ("berth.cli.image", "rmi", "Remove one or more images."),
    "tag": ("berth.cli.image", "tag", "Tag an image."),
    "history": ("berth.cli.image", "history", "Show the history of an image."),
    "save": ("berth.cli.image", "save", "Save images to a tar archive."),
    "load": ("berth.cli.image", "load", "Load images from a tar archive."),
    "import": ("berth.cli.image", "import_", "Import a rootfs tarball as an image."),
    "pull": ("berth.cli.image", "pull", "Download an image from a registry."),
    "push": ("berth.cli.image", "push", "Upload an image to a registry."),
    "login": ("berth.cli.image", "login", "Log in to a registry."),
    "logout": ("berth.cli.image", "logout", "Log out from a registry."),
    "inspect": ("berth.cli.container", "inspect", "Information on containers or images."),
    "run": ("berth.cli.container", "run", "Create and run a new container from an image."),
    "ps": ("berth.cli.container", "ps", "List containers."),
    "rm": ("berth.cli.container", "rm", "Remove one or more containers."),
    "kill": ("berth.cli.container", "kill", "Kill one or more running containers."),
    "start": ("berth.cli.container", "start", "Start one or more stopped containers."),
    "stop": ("berth.cli.container", "stop", "Stop one or more running containers."),
    "restart": ("berth.cli.container", "restart", "Restart one or more containers."),
    "wait": ("berth.cli.container", "wait", "Wait for containers to stop."),
    "logs": ("berth.cli.container", "logs", "Fetch the logs of a container."),
    "create": ("berth.cli.container", "create", "Create a new container."),
    "exec": ("berth.cli.container", "exec_", "Execute a command in a running container."),
    "pause": ("berth.cli.container", "pause", "Pause all processes within containers."),
    "unpause": ("berth.cli.container", "unpause", "Unpause all processes within containers."),
    "rename": ("berth.cli.container", "rename", "Rename a container."),
    "top": ("berth.cli.container", "top", "Display the running processes of a container."),
    "container": ("berth.cli.container", "container", "Manage containers."),
    "volume": ("berth.cli.volume", "volume", "Manage volumes."),
    "network": ("berth.cli.network", "network", "Manage networks."),
    "port": ("berth.cli.container", "port", "List port mappings of a container."),
    "stats": ("berth.cli.container", "stats", "Display containers' resource usage."),
    "attach": ("berth.cli.container", "attach", "Attach to a running container's output."),
    "cp": ("berth.cli.container", "cp", "Copy files between a container and the host."),
    "export": ("berth.cli.container", "export", "Export a container's filesystem as a tar."),
    "diff": ("berth.cli.container", "diff", "Changes to files in a container's filesystem."),
    "commit": ("berth.cli.container", "commit", "Create an image from a container's changes."),
    "system": ("berth.cli.system", "system", "Manage berth (info, df, prune)."),
    "info": ("berth.cli.system", "info", "Display system-wide information."),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "runtime":
        from berth.runtime.cli import main as runtime_main
        return runtime_main(argv[1:])
    if argv[:1] == ["run"] and "--help" not in argv[1:2]:
        from berth.cli.run import fast_main  # the hot path: no click
        return fast_main(argv[1:])
    return _click_main(argv)


def _click_main(argv: list[str]) -> int:
    import gc
    import importlib

    gc.enable()  # the launcher turns it off for `run` (see berth.runtime.run.long_wait)

    import click

    from berth import __version__

    class Lazy(click.Group):
        def list_commands(self, ctx: click.Context) -> list[str]:
            return sorted([*super().list_commands(ctx), *GROUPS])

        def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
            if name in GROUPS:
                module, attr, _ = GROUPS[name]
                try:
                    return getattr(importlib.import_module(module), attr)
                except ImportError:
                    return None
            return super().get_command(ctx, name)

    @click.group(cls=Lazy, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="berth")
    def cli() -> None:
        """berth: virtual machines, containers and a cluster from one tool."""

    @cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                   "help_option_names": []})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def runtime(args: tuple[str, ...]) -> None:
        """The OCI runtime (runc-compatible): create, start, state, kill, delete, run, exec..."""

    from berth.cli.system import version
    cli.add_command(version)

    try:
        rv = cli.main(args=argv, prog_name="berth", standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        return 130
    return rv if isinstance(rv, int) else 0
