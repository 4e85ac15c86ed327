"""`vm create` and `vm define`: record a VM and make its disks and seed; nothing starts.

Everything is checked before anything is made (the definition by the parser, the
resources against the host); if making a disk or the seed fails after the record was
inserted, the record and the VM's directory are removed again: a failed create leaves
nothing behind.
"""

from __future__ import annotations

from berth.vm import disks, resources
from berth.vm.definition import Disk, VMSpec
from berth.vm.store import Record, Store


def create(spec: VMSpec, store: Store) -> Record:
    resources.check(spec, store)
    if spec.image:
        # the boot image is never written: the VM boots a thin clone of it
        spec.disks.insert(0, Disk(base=spec.image))
    paths = store.paths(spec.name)
    for i, d in enumerate(spec.disks):
        d.id = f"disk{i}"
        if d.path is None:
            d.file = paths.disk(i)
    for i, u in enumerate(spec.usb):
        u.id = f"usb{i}"
    paths = store.insert(spec.name, spec.to_dict())
    try:
        for d in spec.disks:
            if d.file is None:
                continue
            if d.base is not None:
                disks.clone(d.file, d.base, d.size)
            else:
                assert d.size is not None
                disks.create(d.file, d.size)
        if spec.cloud_init is not None:
            from berth.vm.seed import write_seed

            write_seed(paths.seed, spec)
    except BaseException:
        store.delete(spec.name)
        raise
    return store.get(spec.name)
