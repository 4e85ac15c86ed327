"""`make demo`: run a container from the local busybox image with berth's own runtime.

Writes a bundle whose root is the image's rootfs (read-only), runs it with
`berth runtime run`, and shows what the process inside sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from berth.runtime.spec import default_spec

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


def main() -> int:
    rootfs = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="berth-demo-") as bundle:
        spec = default_spec()
        spec["root"] = {"path": rootfs, "readonly": True}
        spec["process"]["args"] = ["sh", "-c", SCRIPT]
        spec["linux"]["cgroupsPath"] = "/berth-demo"
        spec["linux"]["resources"]["memory"] = {"limit": 64 * 1024 * 1024}
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        berth = os.path.join(os.path.dirname(sys.executable), "berth")
        cmd = [berth, "runtime", "run", "--bundle", bundle, f"berth-demo-{os.getpid()}"]
        print("$ " + " ".join(cmd), flush=True)
        return subprocess.call(cmd)


if __name__ == "__main__":
    raise SystemExit(main())
