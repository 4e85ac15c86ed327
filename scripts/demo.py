"""`make demo`: load the locally built busybox image and run a container from it.

Loads build/images/busybox/oci into berth's image store (tagged `busybox`),
lists the images, then runs a container with `berth run --rm` and shows what
the process inside sees. As the VM and cluster layers land, they join here.
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
    return sh(berth, "run", "--rm", "--read-only", "--hostname", "berth-demo", "-m", "64m",
              "busybox", "sh", "-c", SCRIPT.strip())


if __name__ == "__main__":
    raise SystemExit(main())
