"""Virtual machines on QEMU: definitions, lifecycle, disks, console, snapshots, KVM or TCG.

One module per concern (definition, kvm, qemu, qmp, disks, seed, guest, store) and per
verb (create, start, stop, ...). Nothing here imports engine/, cluster/ or the CLI.
"""
