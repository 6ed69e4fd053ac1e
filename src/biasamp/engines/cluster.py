"""A real multi-node Ray cluster on this machine, for tests, benchmarks and trials.

Each node is a `ray start` on its own loopback address (head `127.0.0.2`, workers
`127.0.0.3`, …), so traffic between the nodes never leaves the machine. All nodes share a
private `--temp-dir`, and `stop()` ends exactly the processes of that folder (never
`ray stop`, which would end every Ray instance of the machine).

```python
with LocalCluster(nodes=2, cpus_per_node=1) as cluster:
    engine = RayEngine(cluster.address, node_ip_address=cluster.head_ip)
    cluster.kill_node(1)   # the second node dies, as a machine would
```
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from biasamp.errors import BiasampError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), read from /proc."""
    table = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(d.name)] = (ppid, cmd)
    return table


def _descendants(roots: set[int], table: dict[int, tuple[int, str]]) -> set[int]:
    out = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in table.items():
            if ppid in out and pid not in out:
                out.add(pid)
                grew = True
    return out


def _kill(pids: set[int], sig=signal.SIGKILL) -> None:
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class LocalCluster:
    """`nodes` Ray nodes on loopback addresses 127.0.0.2, 127.0.0.3, … of this machine."""

    def __init__(self, nodes: int = 2, *, cpus_per_node: int = 1, object_store_memory: int = 100_000_000,
                 first_ip: int = 2, port: int | None = None, temp_dir: str | Path | None = None,
                 start_timeout: float = 120.0):
        if nodes < 1:
            raise BiasampError("a cluster needs at least one node")
        self.ips = [f"127.0.0.{first_ip + k}" for k in range(nodes)]
        self.cpus_per_node = cpus_per_node
        self.object_store_memory = int(object_store_memory)
        self.port = port
        self._own_temp = temp_dir is None
        # short: Ray's Unix socket paths live below it (a 107-byte limit)
        self.temp_dir = Path(temp_dir) if temp_dir else Path(tempfile.mkdtemp(prefix="bray", dir="/tmp"))
        self.start_timeout = start_timeout
        self.started: list[str] = []

    @property
    def head_ip(self) -> str:
        return self.ips[0]

    @property
    def address(self) -> str:
        return f"{self.head_ip}:{self.port}"

    def _env(self) -> dict:
        env = dict(os.environ)
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only; a driver joins with the same setting
        return env

    def _run(self, args: list[str]) -> None:
        try:
            proc = subprocess.run(args, env=self._env(), capture_output=True, text=True, timeout=self.start_timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise BiasampError(f"`{' '.join(args[:3])} …` did not finish within {self.start_timeout:.0f} s",
                               hint="the machine may be overloaded; try again or raise start_timeout") from None
        if proc.returncode != 0:
            self.stop()
            tail = (proc.stdout + proc.stderr).strip()[-1500:]
            raise BiasampError(f"`ray start` failed (exit {proc.returncode}):\n{tail}",
                               hint="see the Ray log folder " + str(self.temp_dir))

    def start(self) -> LocalCluster:
        """Start the nodes. Token authentication is off unless RAY_AUTH_MODE says otherwise
        (the nodes listen on loopback only); `start` sets the same RAY_AUTH_MODE in this
        process, so a driver started here joins with the same setting."""
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray = _ray_cli()
        common = ["--num-cpus", str(self.cpus_per_node), "--object-store-memory", str(self.object_store_memory),
                  "--disable-usage-stats", "--temp-dir", str(self.temp_dir)]
        if self.port is None:
            self.port = free_port(self.head_ip)
        self._run([ray, "start", "--head", "--node-ip-address", self.head_ip, "--port", str(self.port),
                   "--include-dashboard=false", "--dashboard-port", str(free_port(self.head_ip)),
                   *common])
        self.started.append(self.head_ip)
        for ip in self.ips[1:]:
            self.add_node(ip)
        return self

    def add_node(self, ip: str) -> None:
        self._run([_ray_cli(), "start", "--address", self.address, "--node-ip-address", ip, *(
            "--num-cpus", str(self.cpus_per_node), "--object-store-memory", str(self.object_store_memory),
            "--disable-usage-stats", "--temp-dir", str(self.temp_dir))])
        if ip not in self.ips:
            self.ips.append(ip)
        self.started.append(ip)

    def wait_for_nodes(self, n: int | None = None, timeout: float = 60.0) -> int:
        """Wait until `n` nodes (default: all started) are alive; needs `ray.init` done."""
        import ray

        n = len(self.started) if n is None else n
        t0 = time.monotonic()
        while True:
            alive = sum(1 for x in ray.nodes() if x.get("Alive"))
            if alive >= n or time.monotonic() - t0 > timeout:
                return alive
            time.sleep(0.2)

    # -- processes -----------------------------------------------------------------------
    def _own(self, table=None) -> set[int]:
        table = table if table is not None else _proc_table()
        roots = {pid for pid, (_, cmd) in table.items() if str(self.temp_dir) in cmd}
        return _descendants(roots, table)

    def node_pids(self, ip: str) -> set[int]:
        """The raylet of node `ip` and every process it started (its workers, agents)."""
        table = _proc_table()
        roots = {pid for pid, (_, cmd) in table.items()
                 if str(self.temp_dir) in cmd and "raylet" in cmd.split(" ", 1)[0]
                 and (f"--node_ip_address={ip} " in cmd + " " or f"--node-ip-address={ip} " in cmd + " ")}
        roots |= {pid for pid, (_, cmd) in table.items()
                  if str(self.temp_dir) in cmd and "log_monitor" in cmd and f"--node-ip-address={ip}" in cmd}
        return _descendants(roots, table)

    def kill_node(self, node: int | str) -> set[int]:
        """End a node at once (SIGKILL to its raylet and its workers), as a lost machine."""
        ip = self.ips[node] if isinstance(node, int) else node
        pids = self.node_pids(ip)
        if not pids:
            raise BiasampError(f"no running Ray node at {ip} in {self.temp_dir}")
        _kill(pids)
        return pids

    def stop(self) -> None:
        """End every process of this cluster (and only those), then remove its folder."""
        for _ in range(3):
            pids = self._own()
            if not pids:
                break
            _kill(pids, signal.SIGTERM)
            time.sleep(0.5)
            _kill(self._own(), signal.SIGKILL)
            time.sleep(0.2)
        self.started.clear()
        if self._own_temp:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
