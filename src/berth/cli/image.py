"""Image commands, named as docker names them: images, rmi, tag, history, save, load, import,
and the `image` group (ls, rm, prune, inspect, history, tag, save, load, import).

Thin: parse, call berth.images, print. Errors of berth.images become one line
on stderr and exit status 1 here.
"""

from __future__ import annotations

import json
import sys

import click

from berth.cli.errors import exits, image_failures
from berth.cli.format import human_age, human_size, render, table


def _store():
    from berth.images.store import Store
    return Store()


handled = exits(1, image_failures)  # image verbs exit 1 on failure, as docker's


def _created(config: dict) -> float | None:
    c = config.get("created")
    if not c:
        return None
    import datetime
    try:
        return datetime.datetime.fromisoformat(c.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _rows(store, digests: bool) -> list[dict]:
    from berth.images.reference import parse
    rows = []
    for img in store.images():
        config = store.config(img["id"])
        created = _created(config)
        names = store.names(img["id"]) or ["<none>:<none>"]
        for n in names:
            if n == "<none>:<none>":
                repo, tag = "<none>", "<none>"
            else:
                r = parse(n)
                repo, tag = r.short, r.tag or "<none>"
            digest = "<none>"
            for d in store.digest_names(img["id"]):
                if d.startswith(parse(n).name + "@" if n[0] != "<" else "\0"):
                    digest = d.partition("@")[2]
            rows.append({"Repository": repo, "Tag": tag, "ID": img["id"][7:19],
                         "Digest": digest,
                         "CreatedSince": human_age(created),
                         "CreatedAt": config.get("created") or "",
                         "Size": human_size(img["size"])})
    return rows


@click.command("images")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--digests", is_flag=True, help="Show digests.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("--format", "fmt", help="Format output using a Go template.")
@click.argument("reference", required=False)
@handled
def images(quiet: bool, digests: bool, no_trunc: bool, fmt: str | None,
           reference: str | None) -> None:
    """List images."""
    store = _store()
    rows = _rows(store, digests)
    if reference:
        rows = [r for r in rows if reference in (r["Repository"], f"{r['Repository']}:{r['Tag']}")]
    if no_trunc:
        full = {img["id"][7:19]: img["id"] for img in store.images()}
        for r in rows:
            r["ID"] = full[r["ID"]]
    if quiet:
        click.echo("".join(dict.fromkeys(r["ID"] + "\n" for r in rows)), nl=False)
    elif fmt:
        click.echo(render(fmt, rows, {"ID": "IMAGE ID", "CreatedSince": "CREATED"}), nl=False)
    else:
        cols = ["Repository", "Tag"] + (["Digest"] if digests else []) + \
            ["ID", "CreatedSince", "Size"]
        heads = {"ID": "IMAGE ID", "CreatedSince": "CREATED"}
        click.echo(table([heads.get(c, c.upper()) for c in cols],
                         [[r[c] for c in cols] for r in rows]), nl=False)


@click.command("rmi")
@click.option("-f", "--force", is_flag=True, help="Force removal of the image.")
@click.argument("refs", nargs=-1, required=True)
@handled
def rmi(force: bool, refs: tuple[str, ...]) -> None:
    """Remove one or more images."""
    from berth.images.reference import parse
    store = _store()
    failed = False
    for ref in refs:
        from berth.images.errors import ImageFailure
        try:
            image_id = store.resolve(ref)
            names = store.names(image_id)
            is_name = not ref.startswith("sha256:") and not image_id[7:].startswith(ref)
            if is_name and len(names) > 1:
                store.untag(str(parse(ref)))
                click.echo(f"Untagged: {parse(ref).short}:{parse(ref).tag}")
                continue
            for n in store.remove_image(image_id, force):
                click.echo(f"Untagged: {parse(n).short}:{parse(n).tag}")
            click.echo(f"Deleted: {image_id}")
        except ImageFailure as e:
            click.echo(f"Error: {e}", err=True)
            failed = True
    store.prune()
    if failed:
        sys.exit(1)


@click.command("tag")
@click.argument("source")
@click.argument("target")
@handled
def tag(source: str, target: str) -> None:
    """Create a tag TARGET that refers to SOURCE."""
    from berth.images.reference import parse
    store = _store()
    store.tag(str(parse(target)), store.resolve(source))


def inspect_image(store, image_id: str) -> dict:
    """docker image inspect's shape."""
    from berth.images.reference import parse
    config = store.config(image_id)
    img = store.image(image_id)
    names = store.names(image_id)
    return {
        "Id": image_id,
        "RepoTags": [f"{parse(n).short}:{parse(n).tag}" for n in names],
        "RepoDigests": [parse(d.partition("@")[0]).short + "@" + d.partition("@")[2]
                        for d in store.digest_names(image_id)],
        "Parent": "",
        "Comment": ((config.get("history") or [{}])[-1] or {}).get("comment", ""),
        "Created": config.get("created") or "",
        "DockerVersion": config.get("docker_version", ""),
        "Author": config.get("author", ""),
        "Config": config.get("config") or {},
        "Architecture": config.get("architecture"),
        "Variant": config.get("variant"),
        "Os": config.get("os"),
        "Size": img["size"],
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": ":".join(store.layer_dirs(image_id)[::-1])}},
        "RootFS": {"Type": "layers", "Layers": config["rootfs"]["diff_ids"]},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        "Descriptor": {"mediaType": img["media_type"], "digest": img["manifest"]},
    }


@click.command("inspect")
@click.option("-f", "--format", "fmt", help="Format output using a Go template.")
@click.argument("refs", nargs=-1, required=True)
@handled
def inspect(fmt: str | None, refs: tuple[str, ...]) -> None:
    """Display detailed information on one or more images."""
    store = _store()
    docs = [inspect_image(store, store.resolve(r)) for r in refs]
    if fmt:
        click.echo(render(fmt, docs), nl=False)
    else:
        click.echo(json.dumps(docs, indent=4))


@click.command("history")
@click.option("-q", "--quiet", is_flag=True)
@click.option("--no-trunc", is_flag=True)
@click.option("--format", "fmt")
@click.argument("ref")
@handled
def history(quiet: bool, no_trunc: bool, fmt: str | None, ref: str) -> None:
    """Show the history of an image."""
    store = _store()
    image_id = store.resolve(ref)
    config = store.config(image_id)
    hist = list(config.get("history") or [])
    if not hist:
        hist = [{"created_by": ""} for _ in config["rootfs"]["diff_ids"]]
    sizes = []
    from berth.oci import image as oci
    chains = oci.chain_ids(config["rootfs"]["diff_ids"])
    layer_sizes = [store.db.execute("SELECT size FROM layers WHERE chain_id=?", (c,))
                   .fetchone()[0] for c in chains]
    li = 0
    for h in hist:
        if h.get("empty_layer"):
            sizes.append(0)
        else:
            sizes.append(layer_sizes[li] if li < len(layer_sizes) else 0)
            li += 1
    rows = []
    for i, (h, size) in enumerate(zip(reversed(hist), reversed(sizes), strict=True)):
        created_by = h.get("created_by", "")
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append({"ID": (image_id if no_trunc else image_id[7:19]) if i == 0 else "<missing>",
                     "CreatedSince": human_age(_created(h)), "CreatedBy": created_by,
                     "Size": human_size(size), "Comment": h.get("comment", "")})
    if quiet:
        click.echo("".join(r["ID"] + "\n" for r in rows), nl=False)
    elif fmt:
        click.echo(render(fmt, rows), nl=False)
    else:
        click.echo(table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                         [[r["ID"], r["CreatedSince"], r["CreatedBy"], r["Size"], r["Comment"]]
                          for r in rows]), nl=False)


@click.command("save")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file.")
@click.option("--format", "fmt", type=click.Choice(["docker-archive", "oci-archive"]),
              default="docker-archive", show_default=True)
@click.argument("refs", nargs=-1, required=True)
@handled
def save(output: str | None, fmt: str, refs: tuple[str, ...]) -> None:
    """Save one or more images to a tar archive (stdout by default)."""
    import os

    from berth.images import archive
    store = _store()
    for r in refs:
        store.resolve(r)  # fail before writing anything
    if output is None:
        if sys.stdout.isatty():
            raise click.UsageError("refusing to write an archive to a terminal: use -o FILE")
        archive.save(store, list(refs), sys.stdout.buffer, fmt)
        return
    tmp = f"{output}.berth-{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            archive.save(store, list(refs), f, fmt)
        os.rename(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@click.command("load")
@click.option("-i", "--input", "path", type=click.Path(exists=True), help="Read from a file.")
@click.option("-q", "--quiet", is_flag=True)
@handled
def load(path: str | None, quiet: bool) -> None:
    """Load images from a docker-archive or oci-archive (stdin by default)."""
    import os
    import shutil
    import tempfile

    from berth.images import archive
    store = _store()
    tmp = None
    if path is None:  # archives need random access: spool stdin
        fd, tmp = tempfile.mkstemp(dir=store.tmp, suffix=".tar")
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f)
        path = tmp
    try:
        for name in archive.load(store, path):
            if not quiet:
                label = "Loaded image ID" if name.startswith("sha256:") else "Loaded image"
                click.echo(f"{label}: {name}")
    finally:
        if tmp:
            os.unlink(tmp)


@click.command("import")
@click.option("-c", "--change", "changes", multiple=True,
              help="Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, "
                   "VOLUME, WORKDIR).")
@click.option("-m", "--message", default="", help="Commit message.")
@click.argument("source")
@click.argument("reference", required=False)
@handled
def import_(changes: tuple[str, ...], message: str, source: str, reference: str | None) -> None:
    """Import a rootfs tarball (a file or - for stdin) as an image."""
    from berth.images import archive
    store = _store()
    if source == "-":
        image_id = archive.import_rootfs(store, sys.stdin.buffer, reference, list(changes),
                                         message)
    else:
        with open(source, "rb") as f:
            image_id = archive.import_rootfs(store, f, reference, list(changes), message)
    click.echo(image_id)


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove all unused images too.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@handled
def prune(all_: bool, force: bool) -> None:
    """Remove dangling images and unreferenced blobs and layers."""
    store = _store()
    removed = []
    for img in list(store.images()):
        if not store.names(img["id"]) or all_:
            store.remove_image(img["id"], force=True)
            removed.append(img["id"])
    count, freed = store.prune()
    for r in removed:
        click.echo(f"deleted: {r}")
    click.echo(f"Total reclaimed space: {human_size(freed)}")


@click.group("image")
def image() -> None:
    """Manage images."""


image.add_command(images, "ls")
image.add_command(rmi, "rm")
for _cmd in (tag, inspect, history, save, load, import_, prune):
    image.add_command(_cmd)


@click.command("pull")
@click.option("--tls-verify/--no-tls-verify", "tls_verify", default=None,
              help="Verify TLS (default: on, off for localhost and 127.0.0.1).")
@click.option("--platform", default="linux/amd64", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output.")
@click.argument("ref")
@handled
def pull(tls_verify: bool | None, platform: str, quiet: bool, ref: str) -> None:
    """Download an image from a registry."""
    from berth.images import progress
    from berth.images import pull as pulling
    from berth.images.reference import parse
    store = _store()
    if quiet:
        image_id = pulling.pull(store, ref, tls_verify, progress.discard, platform=platform)
    else:
        with progress.for_stream(sys.stderr) as p:
            image_id = pulling.pull(store, ref, tls_verify, p, platform=platform)
    r = parse(ref)
    click.echo(f"{r.short}:{r.tag}" if r.tag and not quiet else image_id if quiet else str(r))


@click.command("push")
@click.option("--tls-verify/--no-tls-verify", "tls_verify", default=None)
@click.option("-q", "--quiet", is_flag=True)
@click.argument("ref")
@click.argument("dest", required=False)
@handled
def push(tls_verify: bool | None, quiet: bool, ref: str, dest: str | None) -> None:
    """Upload an image to a registry (to DEST when given, as podman allows)."""
    from berth.images import progress
    from berth.images import push as pushing
    store = _store()
    if quiet:
        digest = pushing.push(store, ref, dest, tls_verify, progress.discard)
    else:
        with progress.for_stream(sys.stderr) as p:
            digest = pushing.push(store, ref, dest, tls_verify, p)
    click.echo(f"digest: {digest}")


@click.command("login")
@click.option("-u", "--username")
@click.option("-p", "--password")
@click.option("--password-stdin", is_flag=True)
@click.option("--tls-verify/--no-tls-verify", "tls_verify", default=None)
@click.argument("registry")
@handled
def login(username: str | None, password: str | None, password_stdin: bool,
          tls_verify: bool | None, registry: str) -> None:
    """Log in to a registry (credentials in the auth.json docker and podman read)."""
    from berth.images import auth
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if not username:
        username = click.prompt("Username")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    auth.login(registry, username, password, tls_verify=tls_verify)
    click.echo("Login Succeeded")


@click.command("logout")
@click.option("-a", "--all", "all_", is_flag=True)
@click.argument("registry", required=False)
@handled
def logout(all_: bool, registry: str | None) -> None:
    """Log out from a registry."""
    from berth.images import auth
    if not auth.logout(registry, all_=all_):
        click.echo(f"Not logged in to {registry}", err=True)
        sys.exit(1)
    click.echo(f"Removing login credentials for {registry or 'all registries'}")


image.add_command(pull)
image.add_command(push)
