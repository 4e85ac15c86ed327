"""A small synchronous client over qemu.qmp (QEMU's own QMP library).

Each call opens the VM's QMP socket, negotiates capabilities, runs its commands and
disconnects, inside one asyncio.run(): berth's CLI is synchronous and short-lived, and a
QMP socket serves one client at a time, so no connection is held between calls.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from berth.vm.errors import QMPError


class QMP:
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    def execute(self, command: str, arguments: dict | None = None) -> Any:
        return self.run([(command, arguments)])[0]

    def hmp(self, command: str) -> str:
        """A human-monitor command (for the few verbs QMP lacks); its text output."""
        out = self.execute("human-monitor-command", {"command-line": command})
        return str(out)

    def run(self, commands: list[tuple[str, dict | None]]) -> list[Any]:
        try:
            return asyncio.run(asyncio.wait_for(self._run(commands), self.timeout))
        except TimeoutError:
            raise QMPError(f"qmp {self.path}: no answer within {self.timeout:g}s") from None

    async def _run(self, commands: list[tuple[str, dict | None]]) -> list[Any]:
        from qemu.qmp import ExecuteError, QMPClient
        from qemu.qmp.error import QMPError as LibError

        client = QMPClient("berth")
        try:
            await client.connect(self.path)
        except (OSError, LibError) as e:
            raise QMPError(f"cannot reach qmp socket {self.path}: {e}") from None
        try:
            out = []
            for name, args in commands:
                try:
                    out.append(await client.execute(name, args))
                except ExecuteError as e:
                    raise QMPError(f"qmp {name}: {e}") from None
                except (LibError, OSError, EOFError) as e:
                    # qemu went away mid-command (`quit` does that on purpose)
                    raise QMPError(f"qmp {name}: connection lost ({e or type(e).__name__})"
                                   ) from None
            return out
        finally:
            try:
                await client.disconnect()
            except (LibError, OSError, EOFError):
                pass

    def wait_job(self, job_id: str, timeout: float = 120.0) -> None:
        """Wait for a QMP job to conclude, dismiss it, and raise its error if it failed."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = {j["id"]: j for j in self.execute("query-jobs")}
            job = jobs.get(job_id)
            if job is None:
                raise QMPError(f"qmp job {job_id} vanished")
            if job["status"] == "concluded":
                self.execute("job-dismiss", {"id": job_id})
                if job.get("error"):
                    raise QMPError(f"qmp job {job_id}: {job['error']}")
                return
            if time.monotonic() > deadline:
                raise QMPError(f"qmp job {job_id} did not finish within {timeout:g}s")
            time.sleep(0.05)
