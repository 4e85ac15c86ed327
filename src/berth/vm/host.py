"""`vm host`: how this host runs VMs (type-1 style KVM, or type-2 style emulation with
TCG), its CPU flags, its memory, and what running VMs hold."""

from __future__ import annotations

from berth.vm import kvm, qemu, resources
from berth.vm.store import Store

INTERESTING_FLAGS = ("vmx", "svm", "hypervisor", "avx", "avx2", "avx512f", "aes", "sse4_2",
                     "pdpe1gb", "x2apic", "nx", "lm")


def cpu_info() -> dict:
    model, flags = "", set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k == "model name" and not model:
                    model = v.strip()
                elif k == "flags" and not flags:
                    flags = set(v.split())
    except OSError:
        pass
    return {"model": model, "flags": sorted(f for f in flags if f in INTERESTING_FLAGS),
            "virtualization": "vmx" if "vmx" in flags else "svm" if "svm" in flags else None,
            "nested": "hypervisor" in flags}


def host(store: Store, reprobe: bool = False) -> dict:
    v = kvm.probe(store.root, reprobe=reprobe)
    mode = ("kvm (type-1 style: guests run on the CPU, the kernel is the hypervisor)"
            if v.usable else
            "tcg (type-2 style: qemu emulates the CPU in software)")
    return {"mode": mode, "kvm": {"usable": v.usable, "reason": v.reason,
                                  "probe_seconds": v.seconds, "checked_at": v.checked_at},
            "qemu": qemu.version(), "cpu": cpu_info(), "host": resources.host(),
            "allocated": resources.allocated(store)}
