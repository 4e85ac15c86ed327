#!/bin/bash
# Replace the virtualenv's berth-runtime script with a lean launcher: Debian's python in
# isolated mode without site (-I -S), straight into the runtime's CLI. pip's generated
# script imports `re` and runs site, which costs ~10 ms of a ~30 ms container start.
set -euo pipefail
venv=$1 src=$2
cat > "$venv/bin/berth-runtime" <<PY
#!/usr/bin/python3 -IS
import gc
gc.disable()  # back on before any long wait (berth.runtime.run.long_wait)
import sys
sys.path.insert(0, "$src")
import os
from berth.runtime.cli import main
rc = main()
sys.stdout.flush()
sys.stderr.flush()
os._exit(rc)  # skip interpreter teardown (~5 ms, most of it ctypes)
PY
chmod 755 "$venv/bin/berth-runtime"

# berth: the same for its command line; click and the other dependencies come from the
# virtualenv's site-packages, added by hand since -S skips site, after the standard library
# (every import of a standard module would look there first: ~1 ms of `berth run`)
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cat > "$venv/bin/berth" <<PY
#!/usr/bin/python3 -IS
import gc
gc.disable()  # back on for every verb but run, and before its wait (long_wait)
import sys
sys.path.insert(0, "$src")
sys.path.append("$site")
import os
if sys.argv[1:2] == ["run"]:  # its modules from one file, if fresh (berth/frozen.py)
    from berth.frozen import thaw
    thaw()
from berth.cli.main import main
rc = main()
sys.stdout.flush()
sys.stderr.flush()
os._exit(rc)
PY
chmod 755 "$venv/bin/berth"
