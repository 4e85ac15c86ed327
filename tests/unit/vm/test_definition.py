"""The VM definition parser: strict, with the field's path in every error."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.vm.definition import from_flags, load_yaml, parse, parse_size
from berth.vm.errors import DefinitionError


@pytest.fixture
def kernel(tmp_path: Path) -> str:
    k = tmp_path / "vmlinuz"
    k.write_bytes(b"k")
    (tmp_path / "initrd").write_bytes(b"i")
    (tmp_path / "base.qcow2").write_bytes(b"b")
    return str(k)


def doc(kernel: str, **extra: object) -> dict:
    return {"name": "web", "kernel": kernel} | extra


def error(data: object, **kw: object) -> DefinitionError:
    with pytest.raises(DefinitionError) as e:
        parse(data, **kw)  # type: ignore[arg-type]
    return e.value


def test_minimal(kernel: str) -> None:
    s = parse(doc(kernel))
    assert (s.name, s.cpus, s.memory_mib, s.accel, s.machine) == ("web", 1, 512, "auto", "q35")
    assert s.kernel == kernel and s.disks == [] and s.nics == []


def test_full(kernel: str, tmp_path: Path) -> None:
    s = parse(doc(kernel, cpus=2, memory="1G", initrd="initrd", cmdline="console=ttyS0",
                  accel="tcg", disks=[{"size": "10G"}, {"from": "base.qcow2", "size": 1 << 30},
                                      {"path": "base.qcow2", "readonly": True}],
                  network=[{"user": {"hostfwd": ["tcp::2222-:22"]}}, "none"],
                  usb=["tablet", {"storage": "base.qcow2"}],
                  cloud_init={"hostname": "web", "runcmd": ["echo hi"]}),
              base_dir=str(tmp_path))
    assert s.memory_mib == 1024 and s.cpus == 2
    assert s.initrd == str(tmp_path / "initrd")
    assert s.disks[0].size == 10 << 30 and s.disks[1].base == str(tmp_path / "base.qcow2")
    assert s.disks[2].path and s.disks[2].readonly
    assert len(s.nics) == 1 and s.nics[0].hostfwd == ["tcp::2222-:22"]
    assert [u.kind for u in s.usb] == ["tablet", "storage"]
    assert s.cloud_init and s.cloud_init.hostname == "web"


@pytest.mark.parametrize("extra, field", [
    ({"sise": 1}, "sise"),
    ({"disks": [{"size": "1G"}, {"size": "1G", "colour": "red"}]}, "disks[1].colour"),
    ({"network": [{"user": {"hostfwd": [], "bogus": 1}}]}, "network[0].user.bogus"),
    ({"cloud_init": {"hostname": "x", "extra": 1}}, "cloud_init.extra"),
])
def test_unknown_fields_name_their_path(kernel: str, extra: dict, field: str) -> None:
    e = error(doc(kernel, **extra))
    assert e.field == field and e.problem == "unknown field"


@pytest.mark.parametrize("extra, field, words", [
    ({"cpus": "two"}, "cpus", "expected an integer"),
    ({"cpus": True}, "cpus", "expected an integer"),
    ({"cpus": 0}, "cpus", "between 1"),
    ({"memory": "lots"}, "memory", "is not a size"),
    ({"memory": "1M"}, "memory", "at least 16M"),
    ({"accel": "xen"}, "accel", "not one of"),
    ({"disks": [{}]}, "disks[0]", "give size"),
    ({"disks": [{"path": "nope.qcow2"}]}, "disks[0].path", "no such file"),
    ({"disks": "1G"}, "disks", "expected a list"),
    ({"network": [{"user": {"hostfwd": ["2222:22"]}}]}, "network[0].user.hostfwd", "PROTO"),
    ({"network": ["wifi"]}, "network[0]", "unknown network mode"),
    ({"usb": ["keyboard"]}, "usb[0]", "tablet"),
    ({"kernel": "/no/such/vmlinuz"}, "kernel", "no such file"),
])
def test_bad_values(kernel: str, extra: dict, field: str, words: str) -> None:
    e = error(doc(kernel) | extra)
    assert e.field == field and words in e.problem, str(e)


def test_needs_a_name_and_a_boot_source(kernel: str) -> None:
    assert error({"kernel": kernel}).field == "name"
    assert error({"name": "a b", "kernel": kernel}).field == "name"
    assert error({"name": "x"}).field == "kernel"
    assert error([1, 2]).field == "(top)"


def test_sizes() -> None:
    assert parse_size("512M", "x") == 512 << 20
    assert parse_size("1.5G", "x") == 3 << 29
    assert parse_size(512, "x", "M") == 512 << 20
    assert parse_size("2GiB", "x") == 2 << 30
    with pytest.raises(DefinitionError):
        parse_size("-1G", "x")


def test_yaml_file(tmp_path: Path, kernel: str) -> None:
    f = tmp_path / "vm.yaml"
    f.write_text(f"name: y\nkernel: {kernel}\nmemory: 256M\ndisks:\n  - size: 1G\n")
    assert load_yaml(str(f)).memory_mib == 256
    f.write_text(f"name: y\nkernel: {kernel}\ncpu: 2\n")
    with pytest.raises(DefinitionError, match=r"vm.yaml: cpu: unknown field"):
        load_yaml(str(f))
    f.write_text("name: [\n")
    with pytest.raises(DefinitionError, match="not valid YAML"):
        load_yaml(str(f))


def test_flags(kernel: str, tmp_path: Path) -> None:
    s = from_flags("f", cpus=2, memory="256M", kernel=kernel,
                   disks=("size=1G", f"from={tmp_path}/base.qcow2,size=2G"),
                   networks=("user,hostfwd=tcp::8080-:80,hostfwd=tcp::2222-:22",),
                   usb=("tablet",))
    assert s.disks[1].size == 2 << 30 and len(s.nics[0].hostfwd) == 2
    with pytest.raises(DefinitionError, match=r"flags: disks\[0\].bogus: unknown field"):
        from_flags("f", kernel=kernel, disks=("bogus=1",))
    with pytest.raises(DefinitionError, match="--disk nonsense"):
        from_flags("f", kernel=kernel, disks=("nonsense",))


def test_roundtrip(kernel: str) -> None:
    from berth.vm.definition import VMSpec

    s = parse(doc(kernel, disks=[{"size": "1G"}], network=["user"], usb=["tablet"],
                  cloud_init={"hostname": "h"}))
    assert VMSpec.from_dict(s.to_dict()) == s
