"""berth.frozen: a package's modules thawed from one file behave as imported ones, and a
changed source, another Python or a broken file means plain imports instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from berth import frozen

SRC = str(Path(frozen.__file__).resolve().parents[1])


def make_package(root: Path) -> Path:
    pkg = root / "fz"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""a package"""\n')
    (pkg / "sub" / "__init__.py").write_text("from fz.base import VALUE\nDOUBLE = VALUE * 2\n")
    (pkg / "base.py").write_text("VALUE = 21\n\ndef where():\n    raise ValueError('here')\n")
    (pkg / "top.py").write_text("from fz import sub\nfrom fz.base import VALUE\n"
                                "ANSWER = sub.DOUBLE\n")
    (pkg / "lazy.py").write_text("def load():\n    from fz import later\n    return later.X\n")
    (pkg / "later.py").write_text("X = 'later'\n")
    return pkg


def run(root: Path, code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter that has berth and `root` on its path."""
    head = f"import sys; sys.path[:0] = [{str(root)!r}, {SRC!r}]; from berth import frozen\n"
    return subprocess.run([sys.executable, "-I", "-S", "-c", head + code],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def package(tmp_path: Path) -> Path:
    pkg = make_package(tmp_path)
    out = frozen.build("t", ("fz.top", "fz.lazy", "fz.later"), str(pkg))
    assert out == frozen.path("t", str(pkg)) and os.path.exists(out)
    return pkg


def test_thawed_modules_are_what_import_would_give(package: Path) -> None:
    p = run(package.parent, f"""
assert frozen.thaw("t", {str(package)!r})
import fz.top, fz.lazy, fz.base, fz.sub
for name in ("fz", "fz.sub", "fz.base", "fz.top", "fz.lazy", "fz.later"):
    m = sys.modules[name]
    assert m.__spec__.loader_state == "frozen", name
    assert m.__spec__.name == name and m.__spec__.origin == m.__file__, name
    assert m.__loader__.get_source(name) == open(m.__file__).read(), name
assert fz.__path__ == [{str(package)!r}] and fz.sub.__path__ == [{str(package / "sub")!r}]
assert fz.sub.__package__ == "fz.sub" and fz.top.__package__ == "fz"
assert fz.top.sub is fz.sub and fz.sub is sys.modules["fz.sub"] and fz.later.X == "later"
assert fz.top.ANSWER == 42 and fz.lazy.load() == "later"
try:
    fz.base.where()
except ValueError as e:
    assert e.__traceback__.tb_next.tb_frame.f_code.co_filename == fz.base.__file__
print("ok")
""")
    assert p.stdout == "ok\n", p.stderr


def test_a_changed_source_means_plain_imports(package: Path) -> None:
    base = package / "base.py"
    base.write_text("VALUE = 50\n\ndef where():\n    pass\n")  # a new size and mtime
    p = run(package.parent, f"""
assert not frozen.thaw("t", {str(package)!r})
assert "fz.top" not in sys.modules  # nothing thawed, not even the unchanged modules
import fz.top
assert fz.top.ANSWER == 100 and fz.top.__spec__.loader_state is None
print("ok")
""")
    assert p.stdout == "ok\n", p.stderr


def test_same_size_new_mtime_is_a_change(package: Path) -> None:
    base = package / "base.py"
    st = base.stat()
    base.write_text(base.read_text().replace("21", "12"))
    os.utime(base, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    p = run(package.parent, f"print(frozen.thaw('t', {str(package)!r}))")
    assert p.stdout == "False\n", p.stderr


@pytest.mark.parametrize("content", [b"", b"garbage", None])
def test_a_broken_or_foreign_file_means_plain_imports(package: Path,
                                                      content: bytes | None) -> None:
    target = Path(frozen.path("t", str(package)))
    if content is None:  # a file from another Python: another bytecode magic number
        import marshal
        _, entries = marshal.loads(target.read_bytes())
        content = marshal.dumps((b"\x00\x00\r\n", entries))
    target.write_bytes(content)
    p = run(package.parent, f"print(frozen.thaw('t', {str(package)!r}), 'fz.top' in sys.modules)")
    assert p.stdout == "False False\n", p.stderr


def test_a_cycle_that_would_not_thaw_is_refused(tmp_path: Path) -> None:
    """a imports b, which takes a name from a: fine when a comes first, as here, but b
    finishes first, and thawed first it would find a missing; no file is written."""
    pkg = make_package(tmp_path)
    (pkg / "a.py").write_text("NAME = 'a'\nfrom fz import b\n")
    (pkg / "b.py").write_text("from fz.a import NAME\n")
    with pytest.raises(RuntimeError, match="does not give its modules"):
        frozen.build("t", ("fz.a",), str(pkg))
    assert not os.path.exists(frozen.path("t", str(pkg)))


def test_a_module_that_fails_is_not_left_half_made(tmp_path: Path) -> None:
    pkg = make_package(tmp_path)
    (pkg / "later.py").write_text("import os\nif os.environ.get('FAIL'):\n"
                                  "    raise ImportError('later refuses')\nX = 1\n")
    frozen.build("t", ("fz.top", "fz.later"), str(pkg))
    p = run(tmp_path, f"""
import os
os.environ['FAIL'] = '1'
try:
    frozen.thaw("t", {str(pkg)!r})
except ImportError as e:
    print(e, "fz.later" in sys.modules)
""")
    assert p.stdout == "later refuses False\n", p.stderr


def test_a_package_that_imports_its_own_child_is_refused(tmp_path: Path) -> None:
    """Its child finishes first, before the package exists: thawing in that order could
    not work, so no file is written (and imports stay as they are)."""
    pkg = make_package(tmp_path)
    (pkg / "sub" / "__init__.py").write_text("from fz.sub.leaf import LEAF\nDOUBLE = 2\n")
    (pkg / "sub" / "leaf.py").write_text("LEAF = 1\n")
    with pytest.raises(RuntimeError, match="fz.sub.leaf is imported by its own package"):
        frozen.build("t", ("fz.top",), str(pkg))
    assert not os.path.exists(frozen.path("t", str(pkg)))
    assert [p.name for p in (pkg / "__pycache__").iterdir() if "frozen" in p.name
            or p.name.startswith(".t.")] == []


def test_berths_run_path_freezes(tmp_path: Path) -> None:
    """The run path's modules build into a file that thaws them all (no import cycle or
    package importing its own child has crept in)."""
    pkg = tmp_path / "berth"
    import shutil
    shutil.copytree(Path(frozen.__file__).parent, pkg,
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = frozen.build("run", frozen.RUN, str(pkg))
    p = run(tmp_path, f"""
assert frozen.__file__.startswith({str(pkg)!r})
assert frozen.thaw()
missing = [m for m in {frozen.RUN!r} if sys.modules[m].__spec__.loader_state != "frozen"]
print(missing)
""")
    assert p.stdout == "[]\n", p.stderr
    assert os.path.exists(out)
