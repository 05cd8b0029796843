"""A real local Ray cluster for the Ray launcher's tests: `ray start --head --block` on 127.0.0.1.

The head node runs as a child process in its own process group, on free ports, and is stopped by
its pid (SIGTERM: Ray drains and stops what it started), then its group is killed whatever is
left. Ray rewrites 127.0.0.1 into the machine's outward address (eth0) unless told that this is a
single-node cluster: `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the mode Ray uses on macOS and
Windows, keeps every address on the loopback. A driver needs it too (`cluster.env`); the
sweeper sets it itself for an address on 127.0.0.1.

A cluster of several nodes (`add_node`: `ray start --address=HEAD`, its own processes and
process group, so a test can kill a node as a whole) needs the head on the machine's outward
address (`RayCluster(host=outward_address())`): with `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` Ray
refuses a second node. `own_folder_at` gives each node a folder of its own at one path (a mount
namespace per node, root only), as machines without a shared disk each have their own.

In the plugin's checkout beside servers.py (not in its wheel), so the sweeper's tests and the
app's import the fixture by name; it skips where Ray is not installed (the `ray` extra).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import tenacity

from hydra_plugins.optuna_mlflow_sweeper._testing.processes import descendants
from hydra_plugins.optuna_mlflow_sweeper._testing.servers import _wait, free_port

# what every process of the cluster and its drivers need: addresses stay on 127.0.0.1
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
STARTED = "Ray runtime started."
# GPUs the cluster declares (Ray believes what it is told; none is here): each worker task asks
# for its share, and Ray gives it its devices in CUDA_VISIBLE_DEVICES
GPUS = 2
NODE_PORTS = ("node-manager", "object-manager", "dashboard-agent-listen", "dashboard-agent-grpc",
              "runtime-env-agent", "metrics-export")
NODE_ID = re.compile(r"--node_id=([0-9a-f]+)")


def outward_address() -> str:
    """This machine's address as other machines reach it (the one a UDP socket routes from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # nothing is sent: connect() only picks the route
        return str(s.getsockname()[0])


def _ray_start(args: list[str], folder: Path, log: Path, env: dict[str, str],
               own_folder_at: Path | None) -> subprocess.Popen[bytes]:
    """`ray start ... --block` in `folder`, in a process group of its own. With `own_folder_at`,
    in a mount namespace of its own where that path is `folder/disk`: the node's own disk."""
    command = [str(Path(sys.executable).parent / "ray"), "start", "--block", *args]
    if own_folder_at is not None:
        (folder / "disk").mkdir()
        command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                   'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh",
                   str(folder / "disk"), str(own_folder_at), *command]
    # the memory monitor kills the biggest task when the machine is short of memory: on a
    # machine shared with other work that would be a fault no test asked for
    env = {**os.environ, **env, "RAY_memory_monitor_refresh_ms": "0"}
    with open(log, "wb") as out:
        return subprocess.Popen(command, cwd=folder, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


class Node:
    """A node that joined the cluster: `ray start --address=HEAD`, its processes in one group."""

    def __init__(self, cluster: RayCluster, num_cpus: int, timeout: float) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ray-node-", dir="/tmp"))
        self.log = self.dir / "node.log"
        args = [f"--address={cluster.address}", f"--node-ip-address={cluster.host}",
                f"--num-cpus={num_cpus}", "--num-gpus=0", "--disable-usage-stats",
                f"--temp-dir={self.dir}",
                *(f"--{name}-port={free_port()}" for name in NODE_PORTS)]
        self.proc = _ray_start(args, self.dir, self.log, cluster.node_env, cluster.own_folder_at)
        try:
            _wait(self._started, "ray worker node", timeout)
        except TimeoutError as e:
            tail = self.log.read_text(errors="replace")[-3000:]
            self.close()
            raise TimeoutError(f"{e}: {tail}") from None
        except BaseException:
            self.close()
            raise

    def _started(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"ray start exited ({self.proc.returncode}): "
                               f"{self.log.read_text(errors='replace')[-3000:]}")
        return STARTED in self.log.read_text(errors="replace") and self.node_id() is not None

    def node_id(self) -> str | None:
        """Ray's id of this node (as `ray.get_runtime_context().get_node_id()` says it), read
        from its raylet's command line."""
        return _node_id(self.proc.pid)

    @property
    def disk(self) -> Path:
        """What this node wrote at the cluster's `own_folder_at` (with one)."""
        return self.dir / "disk"

    def kill(self) -> None:
        """The node lost as a whole: SIGKILL to every process it started, at once: its group and
        its workers, which Ray starts in groups of their own (a worker left alive went on
        training its trial for seconds after its node was gone)."""
        workers = descendants(self.proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def close(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def _retrying(attempts: int) -> tenacity.Retrying:
    return tenacity.Retrying(stop=tenacity.stop_after_attempt(attempts), reraise=True,
                             retry=tenacity.retry_if_exception_type((RuntimeError, TimeoutError)))


def _group(pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process in the process group `pgid` (whole lines: `ps`
    cuts them to $COLUMNS, which pytest sets)."""
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "-g", str(pgid)], capture_output=True,
                         text=True, timeout=30).stdout
    return [(int(pid), args) for pid, _, args in
            (line.strip().partition(" ") for line in out.splitlines()) if pid.isdigit()]


def _node_id(pgid: int) -> str | None:
    for _, args in _group(pgid):
        found = NODE_ID.search(args) if "raylet" in args else None
        if found:
            return found.group(1)
    return None


def _started_at(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot, /proc): a reused pid has another."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to `ray start` (it drains, then stops its processes), SIGKILL to the group and to
    its workers still alive (Ray starts them in groups of their own), each checked to be the
    same process as before the drain, not a new one given its pid."""
    workers = [(pid, _started_at(pid)) for pid in descendants(proc.pid)]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(45)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid, started in workers:
        if started is not None and _started_at(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


class RayCluster:
    """A Ray cluster: the head with `num_cpus` CPUs, at `address` (`HOST:PORT`), and the nodes
    `add_node` joins to it. `env`: Ray settings for every node (e.g. short health checks).
    The head declares `num_gpus` (none is here; Ray believes it): each worker task then asks for
    its share, so with GPUs on the head alone every task waits for the head's CPUs."""

    def __init__(self, num_cpus: int = 2, timeout: float = 120, attempts: int = 3,
                 host: str = "127.0.0.1", env: dict[str, str] | None = None,
                 own_folder_at: Path | None = None, num_gpus: int = GPUS) -> None:
        self.host, self.own_folder_at = host, own_folder_at
        self.env = dict(LOOPBACK_ENV) if host == "127.0.0.1" else {}
        self.node_env = {**self.env, **(env or {})}
        self.nodes: list[Node] = []
        # Ray's sockets live under its temp dir: a short path (a socket path is < 108 bytes)
        self.dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        self.log = self.dir / "head.log"
        # `ray start` gives its raylet 30 s to register (hard-coded in Ray): on a loaded machine
        # it may not, and exits; a fresh start on fresh ports then usually does
        self.attempts, self.num_gpus = attempts, num_gpus
        try:
            for attempt in _retrying(attempts):
                with attempt:
                    self._start(num_cpus)
                    try:
                        _wait(self._started, "ray head node", timeout)
                    except BaseException:
                        self.stop()
                        raise
        except BaseException:
            self.close()
            raise

    def _start(self, num_cpus: int) -> None:
        self.port = free_port()
        self.address = f"{self.host}:{self.port}"
        shutil.rmtree(self.dir / "disk", ignore_errors=True)  # an earlier attempt's
        args = ["--head", f"--port={self.port}", f"--node-ip-address={self.host}",
                f"--num-cpus={num_cpus}", f"--num-gpus={self.num_gpus}",
                "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self.dir}",
                f"--ray-client-server-port={free_port()}",
                *(f"--{name}-port={free_port()}" for name in NODE_PORTS)]
        self.proc = _ray_start(args, self.dir, self.log, self.node_env, self.own_folder_at)

    def _started(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"ray start exited ({self.proc.returncode}): {self.tail()}")
        return STARTED in self.log.read_text(errors="replace")

    def add_node(self, num_cpus: int = 1, timeout: float = 120) -> Node:
        """A node joined to the head (`ray start --address`), in a folder and process group of
        its own; stopped with the cluster."""
        for attempt in _retrying(self.attempts):  # a raylet slow to register: see __init__
            with attempt:
                node = Node(self, num_cpus, timeout)
        self.nodes.append(node)
        return node

    def node_id(self) -> str | None:
        """The head node's Ray id."""
        return _node_id(self.proc.pid)

    @property
    def disk(self) -> Path:
        """What the head wrote at `own_folder_at` (with one)."""
        return self.dir / "disk"

    def tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""

    def launcher(self) -> list[str]:
        """The overrides of a sweep whose workers are jobs on this cluster, as a user writes
        them: `hydra/launcher=ray` at its address, nothing else (the sweeper leaves out what Ray
        refuses when joining, and keeps the workers' output in their logs: `output`)."""
        return ["hydra/launcher=ray", f"hydra.launcher.ray.init.address={self.address}"]

    @property
    def logs(self) -> Path:
        return self.dir / "session_latest" / "logs"

    def worker_pids(self) -> set[int]:
        """Every process that ran as one of the head's workers (Ray logs each by its pid)."""
        return {int(p.stem.rpartition("_")[2])
                for p in self.logs.glob("python-core-worker-*_*.log")}

    def output(self, pid: int) -> str:
        """What the worker `pid` printed (Ray keeps each worker's stdout and stderr in files)."""
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.logs.glob(f"worker-*-{pid}.*")))

    def processes(self, title: str) -> list[int]:
        """The pids of the head's processes whose command line starts with `title` (a task's
        worker is titled `ray::<function>` while it runs it)."""
        return [pid for pid, args in _group(self.proc.pid) if args.startswith(title)]

    def stop(self) -> None:
        """The nodes, then the head: SIGTERM to `ray start`, SIGKILL to its group."""
        for node in self.nodes:
            node.close()
        self.nodes = []
        _stop(self.proc)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


_running: list[RayCluster] = []  # this test process's cluster, while its tests run


@pytest.fixture
def ray_cluster() -> RayCluster:
    """A local Ray cluster with 2 CPUs and 2 declared GPUs for the test process, started when a
    test first asks for it (skipped where Ray is not installed). Tests share it: each runs its own
    sweep (its own folder and store), and what a test kills is a worker of its own sweep. It is
    stopped once the next test does not ask for it (`pytest_runtest_teardown`): the Ray tests run
    one after another (collection.py keeps them in one xdist group), and an idle cluster spent
    ~2.7 s of CPU a minute for the rest of the session."""
    if shutil.which("ray", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("Ray is not installed (pip install 'mnist-sweep[ray]'; .ci/run does)")
    if not _running:
        _running.append(RayCluster())
    return _running[0]


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _running and "ray_cluster" not in getattr(nextitem, "fixturenames", ()):
        _running.pop().close()


def pytest_sessionfinish() -> None:  # a run cut short in a Ray test
    while _running:
        _running.pop().close()
