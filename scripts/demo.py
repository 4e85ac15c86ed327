"""`make demo`: a container from the local busybox image, then a VM from the test guest.

Loads build/images/busybox/oci into berth's image store (tagged `busybox`),
lists the images, runs a container with `berth run --rm` and shows what the
process inside sees; then boots berth's test guest (Debian's kernel and a
busybox initramfs) as a VM, prints what the guest reports on its serial
console, and stops and removes it. The cluster joins when it lands.
"""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
echo "hello from a berth container"
echo "  hostname:        $(hostname)"
echo "  pid 1 is:        $(cat /proc/1/comm)"
echo "  processes seen:  $(ls /proc | grep -c '^[0-9]')"
echo "  network devices: $(ls /sys/class/net | tr '\\n' ' ')"
echo "  memory limit:    $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) bytes"
echo "  capabilities:    $(grep CapEff /proc/self/status)"
touch /etc/x 2>/dev/null && echo "  root is writable" || echo "  root is read-only"
"""


def sh(*cmd: str) -> int:
    shown = ['"$SCRIPT"' if "\n" in c else c for c in cmd]
    print("$ " + " ".join(shown), flush=True)
    return subprocess.call(cmd)


def main() -> int:
    image_dir = os.path.abspath(sys.argv[1])
    berth = os.path.join(os.path.dirname(sys.executable), "berth")
    if sh(berth, "load", "-i", os.path.join(image_dir, "oci")) != 0:
        return 1
    sh(berth, "tag", "localhost/image:latest", "busybox")
    sh(berth, "images")
    code = sh(berth, "run", "--rm", "--read-only", "--hostname", "berth-demo", "-m", "64m",
              "busybox", "sh", "-c", SCRIPT.strip())
    if code != 0 or len(sys.argv) < 3:
        return code
    return vm(berth, os.path.abspath(sys.argv[2]))


def vm(berth: str, guest: str) -> int:
    """Boot the test guest under berth (TCG here: the KVM probe says why), show its facts."""
    name = f"berth-demo-{os.getpid()}"
    print("\n# and a virtual machine", flush=True)
    try:
        if sh(berth, "vm", "create", name, "--cpus", "2", "--memory", "256M",
              "--kernel", os.path.join(guest, "vmlinux"),
              "--initrd", os.path.join(guest, "initramfs.cpio"),
              "--cmdline", "console=ttyS0 quiet panic=-1", "--disk", "size=64M",
              "--network", "user,hostfwd=tcp:127.0.0.1:0-:80") != 0:
            return 1
        if sh(berth, "vm", "start", name, "--wait-for", "BERTH-GUEST-READY") != 0:
            return 1
        log = subprocess.run([berth, "vm", "logs", name], capture_output=True, text=True).stdout
        print("what the guest says on its serial console:")
        for line in log.splitlines():
            if line.startswith("BERTH-FACT") or line.startswith("BERTH-GUEST-READY"):
                print("  " + line)
        sh(berth, "vm", "ls")
        return sh(berth, "vm", "stop", name)
    finally:
        subprocess.run([berth, "vm", "rm", "--force", name], capture_output=True)


if __name__ == "__main__":
    raise SystemExit(main())
