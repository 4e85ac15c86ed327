"""The modules of `berth run` in one file, set up without the import system.

`berth run` imports some 35 of berth's modules. Through importlib each one costs
~70-100 us before its code even runs: finders walk the path and stat candidates, the
loader stats the source, reads and checks the .pyc, then module specs, locks and
attributes are made, all in Python; ~3 ms of a ~28 ms run. CPython freezes its own
start-up modules for the same reason.

`build()` imports the run path's modules (RUN) in a fresh interpreter, notes the order
in which their imports finished, and writes their code objects in that order, with each
source's mtime and size, to __pycache__/run.<cache tag>.frozen beside this file (then
checks, in another fresh interpreter, that thawing it gives every module). `thaw()`,
called by the `berth` launcher before `run`, reads that one file and executes each
module in order, exactly as an import would have (same code, same file names in
tracebacks, a spec with the usual SourceFileLoader) but without the search. If any
source has changed, or Python has, it does nothing and imports happen as usual: editing
a module never runs stale code; `make` builds the file again.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType, ModuleType

# what `berth run --rm [--network none|bridge] IMAGE CMD` imports (the run-imports test
# fails when the path grows a module this list lacks)
RUN = (
    "berth.cli.main", "berth.cli.run", "berth.engine.errors", "berth.engine.names",
    "berth.engine.spec", "berth.engine.state", "berth.engine.containers", "berth.database",
    "berth.engine.seccomp_profile", "berth.runtime.seccomp", "berth.engine.foreground",
    "berth.engine.jsonlog",
    "berth.oci.jsonfast", "berth.oci.errors", "berth.oci.runtime_config", "berth.oci.image",
    "berth.runtime.argv", "berth.runtime.errors", "berth.runtime.linux",
    "berth.runtime.capabilities", "berth.runtime.process", "berth.runtime.mounts",
    "berth.runtime.init", "berth.runtime.store", "berth.runtime.state",
    "berth.runtime.create", "berth.runtime.start", "berth.runtime.delete",
    "berth.runtime.run", "berth.runtime.cgroups", "berth.runtime.cgroups.v1",
    "berth.images.errors", "berth.images.reference", "berth.images.store",
    "berth.images.snapshots",
)

HERE = os.path.dirname(os.path.abspath(__file__))

# importlib's own classes, without importing importlib (the interpreter holds them)
_bootstrap_external = sys.modules["_frozen_importlib_external"]
_ModuleSpec = type(sys.__spec__)


def path(name: str = "run", package_dir: str = HERE) -> str:
    return os.path.join(package_dir, "__pycache__",
                        f"{name}.{sys.implementation.cache_tag}.frozen")


def thaw(name: str = "run", package_dir: str = HERE) -> bool:
    """Execute the frozen modules of `name` that are not imported yet; False (and nothing
    done) when the file is missing, unreadable, from another Python, or any of its
    sources has changed since it was written."""
    return thaw_file(path(name, package_dir))


def thaw_file(frozen: str) -> bool:
    from marshal import loads
    try:
        with open(frozen, "rb") as f:
            magic, entries = loads(f.read())
    except (OSError, EOFError, ValueError, TypeError):
        return False
    if magic != _bootstrap_external.MAGIC_NUMBER:
        return False
    stat = os.stat
    for _, origin, _, mtime, size, _ in entries:
        try:
            st = stat(origin)
        except OSError:
            return False
        if st.st_mtime_ns != mtime or st.st_size != size:
            return False
    modules = sys.modules
    for mod_name, origin, is_package, _, _, code in entries:
        if mod_name in modules:
            continue
        _execute(mod_name, origin, is_package, code, modules)
    return True


def _execute(name: str, origin: str, is_package: bool, code: CodeType,
             modules: dict[str, ModuleType]) -> None:
    module = type(sys)(name)
    spec = _ModuleSpec(name, _bootstrap_external.SourceFileLoader(name, origin),
                       origin=origin, is_package=is_package)
    spec.has_location = True
    spec.loader_state = "frozen"  # how a test tells a thawed module from an imported one
    module.__spec__ = spec
    module.__loader__ = spec.loader
    module.__file__ = origin
    parent, _, child = name.rpartition(".")
    if is_package:
        module.__path__ = [os.path.dirname(origin)]
        module.__package__ = name
    else:
        module.__package__ = parent
    modules[name] = module
    try:
        exec(code, module.__dict__)  # noqa: S102 - the module's own compiled source
    except BaseException:
        del modules[name]
        raise
    module = modules[name]  # as import does: a module may replace itself in sys.modules
    if parent:
        setattr(modules[parent], child, module)


def build(name: str = "run", modules: tuple[str, ...] = RUN,
          package_dir: str = HERE) -> str:
    """Write the frozen file of `modules` (and of the package modules they import) and
    return its path; RuntimeError, and no file, if thawing it would not give them all."""
    import marshal
    import subprocess
    import tempfile

    package = os.path.basename(package_dir)
    # the package's parent first; berth's own for this module, if the package is another
    roots = [os.path.dirname(package_dir), os.path.dirname(HERE)]
    path_head = f"import sys; sys.path[:0] = {roots!r}; "
    order = subprocess.run(
        [sys.executable, "-I", "-S", "-c",
         path_head + "from berth.frozen import _order; "
         f"print(' '.join(_order({package!r}, {list(modules)!r})))"],
        capture_output=True, text=True)
    if order.returncode != 0:
        raise RuntimeError(f"importing the modules to freeze failed:\n{order.stderr}")
    entries = []
    done = {"berth", "berth.frozen"}  # what the recording process imported before it began
    for mod_name, origin in (line.split("=", 1) for line in order.stdout.split()):
        parent = mod_name.rpartition(".")[0]
        if parent and parent not in done:
            raise RuntimeError(f"{mod_name} is imported by its own package {parent}, before "
                               f"that exists: its modules cannot be thawed in order")
        done.add(mod_name)
        st = os.stat(origin)
        with open(origin, "rb") as f:
            code = compile(f.read(), origin, "exec", dont_inherit=True)
        entries.append((mod_name, origin, origin.endswith("__init__.py"), st.st_mtime_ns,
                        st.st_size, code))
    target = path(name, package_dir)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=f".{name}.")
    try:
        os.fchmod(fd, 0o644)  # as .pyc files: readable by whoever runs berth
        with os.fdopen(fd, "wb") as f:
            f.write(marshal.dumps((_bootstrap_external.MAGIC_NUMBER, entries)))
        check = subprocess.run(
            [sys.executable, "-I", "-S", "-c",
             path_head + f"from berth.frozen import _check; "
             f"_check({tmp!r}, {[e[0] for e in entries]!r})"],
            capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"thawing {target} does not give its modules:\n{check.stderr}")
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


def _order(package: str, modules: list[str]) -> list[str]:
    """In a fresh interpreter: import `modules`, and list `name=file` of each of the
    package's modules in the order their imports finished (their code ran to its end)."""
    finished: list[str] = []
    path_finder = _bootstrap_external.PathFinder

    class Recorder:
        @staticmethod
        def find_spec(name: str, path: object = None, target: object = None) -> object:
            if name != package and not name.startswith(package + "."):
                return None  # the standard library's: the usual finders
            spec = path_finder.find_spec(name, path, target)
            if spec is not None:
                run = spec.loader.exec_module

                def exec_module(module: ModuleType) -> None:
                    run(module)
                    finished.append(f"{name}={spec.origin}")
                spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Recorder)  # type: ignore[arg-type]
    for m in modules:
        __import__(m)
    return finished


def _check(frozen: str, names: list[str]) -> None:
    """In a fresh interpreter: thaw `frozen` and fail unless each of `names` came from it."""
    if not thaw_file(frozen):
        raise SystemExit(f"{frozen} did not thaw")
    missing = [n for n in names
               if getattr(getattr(sys.modules.get(n), "__spec__", None), "loader_state",
                          None) != "frozen"]
    if missing:
        raise SystemExit(f"not thawed (imported before their turn): {' '.join(missing)}")


if __name__ == "__main__":
    print(build())
