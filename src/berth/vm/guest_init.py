"""The test guest's /init and udhcpc scripts (busybox sh), as text for the initramfs.

/init mounts proc/sys/dev, loads the modules listed in /etc/modules.core (and
/etc/modules.usb when an xHCI controller is present), powers off on the ACPI power
button, brings NICs up (berth.net=dhcp|none|ADDR/PREFIX[,GW]), serves HTTP (berth.httpd),
prints `BERTH-FACT ...` lines and `BERTH-GUEST-READY`, then runs a shell on the console.
It must never exit: it is pid 1, and the kernel panics when pid 1 ends.
"""

MARKER = "BERTH-GUEST-READY"
FACT = "BERTH-FACT"

INIT = r"""#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /tmp /run /var/run /www
mount -t devpts devpts /dev/pts
mods=$(cat /etc/modules.core)
# xHCI is PCI class 0x0c0330
if grep -qx 0x0c0330 /sys/bus/pci/devices/*/class 2>/dev/null; then
  mods="$mods $(cat /etc/modules.usb)"
fi
for m in $mods; do
  insmod "/lib/modules/$m.ko" 2>/tmp/insmod.err ||
    echo "BERTH-GUEST-WARN insmod $m: $(cat /tmp/insmod.err)"
done
arg() {
  for a in $(cat /proc/cmdline); do case "$a" in "$1"=*) echo "${a#*=}"; return;; esac; done
  echo "$2"
}
hostname "$(arg berth.hostname berth-guest)"
if [ "$(arg berth.probe 0)" = 1 ]; then echo "BERTH-GUEST-READY probe"; poweroff -f; fi
# the ACPI power button (QMP system_powerdown) powers the guest off
for e in /sys/class/input/event*; do
  if grep -q "Power Button" "$e/device/name" 2>/dev/null; then
    (head -c 1 "/dev/input/${e##*/}" >/dev/null; echo BERTH-GUEST-POWEROFF; sync; poweroff -f) &
  fi
done
ip link set lo up
net=$(arg berth.net dhcp)
for n in /sys/class/net/*; do
  n=${n##*/}; [ "$n" = lo ] && continue
  ip link set "$n" up
  case "$net" in
    none) ;;
    dhcp) udhcpc -i "$n" -n -q -t 4 -T 1 -s /etc/udhcpc.script >/dev/null 2>&1 ;;
    *) ip addr add "${net%%,*}" dev "$n"
       case "$net" in *,*) ip route add default via "${net#*,}" ;; esac ;;
  esac
done
port=$(arg berth.httpd 80)
if [ "$port" != 0 ]; then
  echo "BERTH-GUEST-HTTP $(hostname)" > /www/index.html
  httpd -p "$port" -h /www
fi
if [ -d /sys/bus/pci/drivers/xhci_hcd ] && ls /sys/bus/pci/drivers/xhci_hcd | grep -q :; then
  sleep 1  # let the USB bus enumerate
fi
facts() {
  echo "BERTH-FACT nproc=$(nproc)"
  echo "BERTH-FACT memtotal_kb=$(awk '/^MemTotal/{print $2}' /proc/meminfo)"
  for b in /sys/block/*; do
    d=${b##*/}; [ -e "$b/size" ] || continue; case "$d" in loop*|ram*) continue;; esac
    echo "BERTH-FACT block $d bytes=$(( $(cat $b/size) * 512 ))"
  done
  for n in /sys/class/net/*; do
    d=${n##*/}; [ -e "$n/address" ] && [ "$d" != lo ] || continue
    a=$(ip -4 -o addr show dev "$d" | awk '{print $4}' | head -n 1)
    echo "BERTH-FACT net $d mac=$(cat $n/address) addr=${a:-none}"
  done
  for u in /sys/bus/usb/devices/*; do
    [ -f "$u/product" ] && echo "BERTH-FACT usb ${u##*/} product=$(cat $u/product | tr ' ' _)"
  done
}
# a subshell: whatever goes wrong in it, init (pid 1) carries on to the console
( facts )
echo BERTH-GUEST-READY
while :; do setsid cttyhack sh -l; sleep 1; done
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
"""
