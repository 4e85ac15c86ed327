"""The supervisor: one process, started on demand, that owns every detached container.

It holds each container's stdio (engine/stdio.py): stdout and stderr pipes, or
with -t the master of the container's pty, and with -i the writing end of its
stdin. It writes the output to the container's json.log as docker's json-file
driver does and to the clients attached at the moment, is the child
subreaper that reaps the containers' init processes and records their exit
codes, applies restart policies, answers the embedded DNS of user networks,
and exits a moment after its last container. One process for all containers
keeps the memory per idle container far below a conmon per container.

CLIs talk to it over a unix socket (<root>/run/supervisor.sock) with one JSON
request and one JSON reply per connection; after an "attach" reply the
connection stays open and carries the container's stdio (engine/stdio.py
describes the framing). A lock file makes sure only one supervisor runs per
root; `client.request()` starts one when none answers.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import time

from berth.engine.errors import EngineError
from berth.engine.rundir import run_dir, socket_path
from berth.engine.state import State
from berth.engine.stdio import ContainerIO
from berth.images.errors import ImageFailure
from berth.runtime.errors import RuntimeFailure

IDLE_EXIT = 1.0  # seconds without containers before the supervisor exits


def read_line(sock: socket.socket) -> bytes:
    """One newline-terminated message (the protocol's unit), or what came before EOF."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


class Supervisor:
    def __init__(self, root: str) -> None:
        from berth.images.store import Store

        self.root = root
        self.state = State(root)
        self.store = Store()
        self.sel = selectors.DefaultSelector()
        self.running: dict[int, str] = {}  # init pid -> container id
        self.io: dict[str, ContainerIO] = {}  # container id -> its stdio (engine/stdio.py)
        self.logs: dict[str, int] = {}
        self.idle_since: float | None = time.monotonic()
        self.dns: dict[str, socket.socket] = {}  # network name -> UDP socket on its gateway

    # --- lifecycle of the supervisor itself ---------------------------------

    def serve(self) -> None:
        from berth.runtime import linux

        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
        os.makedirs(run_dir(self.root), 0o700, exist_ok=True)
        lock = os.open(os.path.join(run_dir(self.root), "supervisor.lock"),
                       os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + 2
        while True:  # an old supervisor may be on its way out: wait for it, briefly
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return  # another supervisor serves this root
                time.sleep(0.01)
        path = socket_path(self.root)
        srv = self._listen(path)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, lambda *_: None)
        self.sel.register(wake_r, selectors.EVENT_READ, ("signal", None))
        try:
            while True:
                for key, mask in self.sel.select(timeout=0.25):
                    kind, data = key.data
                    if kind == "io":
                        data(mask)
                    elif kind == "accept":
                        self._accept(data)
                    elif kind == "signal":
                        try:
                            os.read(wake_r, 512)
                        except BlockingIOError:
                            pass
                        self._reap()
                    elif kind == "dns":
                        self._answer_dns(*data)
                self._reap()
                self._drop_unused_dns()
                if self.running or self.dns:
                    self.idle_since = None
                elif self.idle_since is None:
                    self.idle_since = time.monotonic()
                elif time.monotonic() - self.idle_since > IDLE_EXIT:
                    # stop taking connections first, then serve whoever already connected
                    os.unlink(path)
                    served = False
                    while self._accept(srv):
                        served = True
                    if served and self.running:
                        self.sel.unregister(srv)
                        srv.close()
                        srv = self._listen(path)
                        self.idle_since = None
                        continue
                    break
        finally:
            srv.close()
            os.close(lock)

    def _listen(self, path: str) -> socket.socket:
        if os.path.exists(path):
            os.unlink(path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        os.chmod(path, 0o600)
        srv.listen(128)
        srv.setblocking(False)
        self.sel.register(srv, selectors.EVENT_READ, ("accept", srv))
        return srv

    def _accept(self, srv: socket.socket) -> bool:
        try:
            conn, _ = srv.accept()
        except BlockingIOError:
            return False
        keep = False
        try:
            conn.settimeout(5)
            data = read_line(conn)
            try:
                req = json.loads(data)
                if req.get("op") == "attach":
                    reply, io = self.attach(req)
                else:
                    reply, io = self.handle(req), None
            except (EngineError, RuntimeFailure, ImageFailure, OSError, ValueError,
                    KeyError) as e:
                reply, io = {"ok": False, "error": str(e)}, None
            except Exception as e:  # noqa: BLE001 - a bug must not kill every container's logs
                reply, io = {"ok": False, "error": f"{type(e).__name__}: {e}"}, None
            try:
                conn.sendall((json.dumps(reply) + "\n").encode())
            except OSError:
                return True
            if io is not None:  # the connection stays: the container's stdio from now on
                io.add_client(conn, bool(req.get("stdin")))
                keep = True
        finally:
            if not keep:
                conn.close()
        return True

    def handle(self, req: dict) -> dict:
        op = req.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "start":
            return {"ok": True, "pid": self.start(req["id"])}
        if op == "dns":
            self.ensure_dns(req["network"])
            return {"ok": True}
        if op == "stop":
            self.stop(req["id"], float(req.get("timeout", 10)), req.get("signal", 15))
            return {"ok": True}
        raise EngineError(f"unknown request {op!r}")

    def attach(self, req: dict) -> tuple[dict, ContainerIO | None]:
        """Attach a client to a container's stdio (after starting it, with "start")."""
        c = self.state.get(req["id"])
        if req.get("start") and not (c["status"] == "running" and c["pid"] in self.running):
            self.state.update(c["id"], stop_requested=0)
            self.start(c["id"])
        io = self.io.get(c["id"])
        if io is None:
            raise EngineError(f"container {c['name']} is not running: start it first "
                              "(berth start -a)")
        spec = json.loads(c["spec"])
        return {"ok": True, "tty": io.tty, "stdin": io.stdin is not None,
                "stdin_once": io.stdin_once, "interactive": bool(spec.get("interactive"))}, io

    # --- the embedded DNS of user-defined networks ----------------------------

    def ensure_dns(self, network: str) -> None:
        from berth.engine import networks
        if network in self.dns:
            return
        net = networks.get(self.state, network)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((net["Gateway"], 53))
        s.setblocking(False)
        self.dns[network] = s
        self.sel.register(s, selectors.EVENT_READ, ("dns", (network, s)))

    def _answer_dns(self, network: str, s: socket.socket) -> None:
        from berth.engine import dns
        try:
            packet, addr = s.recvfrom(4096)
        except BlockingIOError:
            return
        reply = dns.answer(packet, lambda name: self._lookup(network, name, addr[0]))
        if reply is not None:
            try:
                s.sendto(reply, addr)
            except OSError:
                pass

    def _lookup(self, network: str, name: str, asker: str) -> str | None:
        """`name` among the containers on the networks the asker shares (this one first):
        their names, hostnames, short ids and the aliases of their endpoints there."""
        from berth.engine.networks import DEFAULT
        db = self.state.db
        nets = [network]
        row = db.execute("SELECT container FROM endpoints WHERE network = ? AND ip = ?",
                         (network, asker)).fetchone()
        if row is not None:
            nets += [r[0] for r in db.execute(
                "SELECT network FROM endpoints WHERE container = ? AND network NOT IN (?, ?)",
                (row[0], network, DEFAULT))]
        for net in nets:
            rows = db.execute(
                "SELECT e.ip, e.aliases, c.name, c.id, c.spec FROM endpoints e JOIN containers c "
                "ON c.id = e.container WHERE e.network = ?", (net,)).fetchall()
            for ip, aliases, cname, cid, spec in rows:
                host = (json.loads(spec).get("hostname") or "").lower()
                if name in (cname.lower(), host) or (len(name) >= 12 and cid.startswith(name)) \
                        or name in (a.lower() for a in json.loads(aliases or "[]")):
                    return str(ip)
        return None

    def _drop_unused_dns(self) -> None:
        for network in list(self.dns):
            used = self.state.db.execute("SELECT 1 FROM endpoints WHERE network = ?",
                                         (network,)).fetchone()
            if not used:
                s = self.dns.pop(network)
                self.sel.unregister(s)
                s.close()

    # --- containers ---------------------------------------------------------

    def start(self, cid: str) -> int:
        from berth.engine import containers
        from berth.runtime.delete import delete as rt_delete
        from berth.runtime.run import create_and_start

        c = self.state.get(cid)
        if c["status"] == "running" and c["pid"] in self.running:
            return int(c["pid"])
        bundle, config = containers.prepare_bundle(self.state, self.store, c)
        rts = containers.runtime_store()
        if os.path.isdir(rts.dir(cid)):
            rt_delete(rts, cid, force=True)
        log_path = os.path.join(self.state.dir(cid), "json.log")
        if cid not in self.logs:
            self.logs[cid] = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                                     | os.O_CLOEXEC, 0o640)
        spec = json.loads(c["spec"])
        tty, interactive = bool(spec.get("tty")), bool(spec.get("interactive"))
        mine: list[int] = []  # the supervisor's ends, closed if the start fails
        theirs: list[int] = []  # the container's ends, closed here once it has them
        console = None
        try:
            null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            theirs.append(null)
            if tty:  # the runtime makes the pty inside and sends its master back
                console = containers.console_socket()
                stdio = (null, null, null)
            else:
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                mine += [out_r, err_r]
                theirs += [out_w, err_w]
                in_r = in_w = None
                if interactive:  # -i: a stdin that attach writes to, kept open here
                    in_r, in_w = os.pipe2(os.O_CLOEXEC)
                    mine.append(in_w)
                    theirs.append(in_r)
                stdio = (in_r if in_r is not None else null, out_w, err_w)
            pid = create_and_start(rts, cid, bundle, stdio=stdio,
                                   console_socket=console.path if console else None,
                                   between=containers.plug_network(self.state, cid,
                                                                   self.ensure_dns),
                                   config=config)
            if console is not None:
                master = console.master()
                mine.append(master)
                io = ContainerIO(self.sel, self.logs[cid], {master: "stdout"},
                                 master if interactive else None, True, False)
            else:
                io = ContainerIO(self.sel, self.logs[cid], {out_r: "stdout", err_r: "stderr"},
                                 in_w, False, bool(spec.get("stdin_once")))
        except BaseException:
            for fd in mine:
                os.close(fd)
            containers.unmount(self.state, cid)
            containers.release_network(self.state, cid)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
            if console is not None:
                console.close()
        self.io[cid] = io
        self.running[pid] = cid
        self.state.update(cid, status="running", pid=pid, started=time.time(), exit_code=None,
                          finished=None, stop_requested=0, supervised=1)
        return pid

    def stop(self, cid: str, timeout: float, sig: int) -> None:
        c = self.state.get(cid)
        self.state.update(cid, stop_requested=1)
        pid = c["pid"]
        if c["status"] != "running" or pid not in self.running:
            return
        from berth.runtime.linux import signal_process
        signal_process(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._reap_one(pid):
                return
            time.sleep(0.01)
        signal_process(pid, signal.SIGKILL)
        while not self._reap_one(pid):
            time.sleep(0.005)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._exited(pid, status)

    def _reap_one(self, pid: int) -> bool:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return pid not in self.running
        if got == 0:
            return False
        self._exited(got, status)
        return True

    def _exited(self, pid: int, status: int) -> None:
        cid = self.running.pop(pid, None)
        if cid is None:
            return  # an orphan re-parented to us (a daemon's child): just reaped
        from berth.engine import containers
        from berth.runtime.delete import delete as rt_delete
        from berth.runtime.errors import RuntimeFailure

        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        io = self.io.pop(cid, None)
        if io is not None:
            io.drain()  # what the process wrote before it died
        try:
            rt_delete(containers.runtime_store(), cid, force=True)
        except RuntimeFailure:
            pass
        containers.unmount(self.state, cid)
        containers.release_network(self.state, cid)
        self.state.update(cid, status="exited", pid=0, exit_code=code, finished=time.time(),
                          paused=0)
        if io is not None:
            io.close(code)  # attached clients learn the exit code
        try:
            c = self.state.get(cid)
        except EngineError:  # removed meanwhile (rm -f, system check --repair)
            c = None
        if c is not None and containers.should_restart(c, code):
            self.state.update(cid, restart_count=c["restart_count"] + 1)
            try:
                self.start(cid)
            except Exception as e:  # noqa: BLE001
                self.state.update(cid, status="exited", exit_code=code)
                sys.stderr.write(f"berth supervisor: restarting {cid[:12]}: {e}\n")
        else:
            log = self.logs.pop(cid, None)
            if log is not None:
                os.close(log)
            if c is not None and json.loads(c["spec"]).get("remove"):  # run -d --rm
                containers.leave_exit_code(self.state, cid, code)  # for a `wait` under way
                try:
                    # owned: nobody else can be starting it, and we must not ping ourselves
                    containers.remove(self.state, cid, force=True, volumes=True, owned=True)
                except Exception as e:  # noqa: BLE001
                    sys.stderr.write(f"berth supervisor: removing {cid[:12]}: {e}\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = argv[0] if argv else State().root
    try:
        Supervisor(root).serve()
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
