#!/bin/bash
# podman on these hosts needs ulimits it may set without CAP_SYS_RESOURCE (used by the
# interoperability tests and benchmarks). Only writes the file when it does not exist.
conf=/etc/containers/containers.conf
if [ ! -e "$conf" ]; then
  mkdir -p /etc/containers
  cat > "$conf" <<'CONF'
# written by berth's Makefile (scripts/podman-conf.sh)
[containers]
default_ulimits = ["nofile=1000:1000", "nproc=1000:1000"]
CONF
fi
