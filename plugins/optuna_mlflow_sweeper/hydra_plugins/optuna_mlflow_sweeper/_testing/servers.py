"""Real, throwaway servers for the shared-services tests: a PostgreSQL cluster, an MLflow server,
an S3-compatible object store (moto's server).

Each listens on 127.0.0.1 at a free port, can be stopped and started again (an outage), wait for
readiness with a bound, and are stopped by the pid they were started with. PostgreSQL refuses
to run as root, so its cluster belongs to `nobody` (tests run as root here and in CI).

Test support shared by the sweeper's tests and the app's (both load the fixtures through
`plugin.py`): in the plugin's checkout, importable by name from an editable install, and left out
of its wheel (pyproject's `exclude`). `_testing` is a namespace folder like `_impl`: Hydra's
plugin scan neither imports it nor walks into it.

One server of each kind per test process (session scope), started on first use: outage tests
stop and restart them, which another process's test in the middle of a sweep would not survive,
so xdist workers do not share them. Each test uses its own study, experiment or model name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hydra_plugins.optuna_mlflow_sweeper._impl.blank_stores import create_store

PG_USER = "sweeper"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bindir() -> Path | None:
    """Where initdb/pg_ctl are: Debian keeps them out of PATH, in $(pg_config --bindir)."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)  # type: ignore[arg-type]
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    return None


def _wait(check: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def http_ready(proc: subprocess.Popen | None, log: Path, what: str, url: str) -> bool:
    """Whether the server `proc` answers 200 at `url` (a `_wait` check); a server that exited
    first is a RuntimeError with the end of its `log`, not a wait until the timeout."""
    if proc is not None and proc.poll() is not None:
        raise RuntimeError(f"{what} exited: {log.read_text(errors='replace')[-3000:]}")
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class Postgres:
    """A PostgreSQL cluster in a temp folder, owned by an unprivileged user, password auth."""

    def __init__(self, user: str = "nobody") -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = bindir
        self.owner = pwd.getpwnam(user)
        self.password = "pw-" + secrets.token_hex(8)  # tests search every record for it
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sweeper-pg-"))
        os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)
        self.data = self.dir / "data"
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password)
        os.chown(pwfile, self.owner.pw_uid, self.owner.pw_gid)
        self._as_owner([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "--auth-local=trust", "--auth-host=scram-sha-256",
                        f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"], timeout=120)
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.dir}'\nfsync = off\n"
                    "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n"
                    # the transactions counted in a database are its clients' only
                    "autovacuum = off\n")
        self.start()
        for sql in (f"CREATE ROLE {PG_USER} LOGIN PASSWORD '{self.password}'",
                    f"CREATE DATABASE optuna OWNER {PG_USER}",
                    f"CREATE DATABASE mlflow OWNER {PG_USER}"):
            self.psql(sql)

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str) -> str:
        """`sql` run as the superuser, in the `postgres` database; its output, unaligned."""
        return self._as_owner([str(self.bin / "psql"), "-h", str(self.dir), "-p", str(self.port),
                               "-U", "postgres", "-d", "postgres", "-q", "-A", "-t", "-c", sql],
                              timeout=30)

    def create_database(self, name: str) -> str:
        """A new, empty database owned by the sweeper's role; its URL."""
        self.psql(f"CREATE DATABASE {name} OWNER {PG_USER}")
        return self.url(name)

    def transactions(self, database: str, timeout: float = 30) -> int:
        """The transactions the server counted in `database` (committed + rolled back).

        A backend reports its counts up to a second late (PostgreSQL >= 15) or when it exits:
        read until two reads a second apart agree. Each read is a new `psql` in another
        database, so it neither counts here nor sees a cached snapshot.
        """
        sql = ("SELECT xact_commit + xact_rollback FROM pg_stat_database "
               f"WHERE datname = '{database}'")
        last = int(self.psql(sql))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(1.1)
            now = int(self.psql(sql))
            if now == last:
                return now
            last = now
        raise TimeoutError(f"transaction counts of {database} still changing after {timeout} s")

    def _as_owner(self, args: list[str], timeout: float) -> str:
        out = subprocess.run(["runuser", "-u", self.owner.pw_name, "--", *args], cwd=self.dir,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {out.stdout}\n{out.stderr}")
        return out.stdout

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> None:
        self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                        str(self.dir / "log"), "-w", "-t", "60", "start"], timeout=90)

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected), by the postmaster's pid; bounded."""
        pid = self.pid()
        if pid is None:
            return
        for sig, wait in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.2)

    def dump(self, database: str) -> str:
        """Everything in `database` as SQL text (to search it for a password)."""
        return self._as_owner([str(self.bin / "pg_dump"), "-h", str(self.dir), "-p",
                               str(self.port), "-U", "postgres", database], timeout=60)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a PostgreSQL backend store and served artifacts.

    The backend URL (with its password) is passed as MLFLOW_BACKEND_STORE_URI, not argv.
    """

    def __init__(self, backend_uri: str, workdir: Path, app_name: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.backend_uri = backend_uri
        self.workdir = workdir
        self.app_args = ["--app-name", app_name] if app_name else []  # e.g. basic-auth
        self.env = env or {}
        self.artifacts = workdir / "artifacts"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start(timeout=180)  # the first start creates the schema

    def start(self, timeout: float = 90) -> None:
        mlflow = Path(sys.executable).parent / "mlflow"
        env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": self.backend_uri,
               # the tracking server alone: no job runner (8 huey consumers, 280 MB each, for
               # MLflow's GenAI jobs), which sweeps never use
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **self.env}
        env = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
        log = open(self.workdir / "mlflow-server.log", "ab")  # noqa: SIM115 (the child owns it)
        self.proc = subprocess.Popen(
            [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--serve-artifacts", "--artifacts-destination",
             str(self.artifacts), *self.app_args],
            cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends its workers too
        )
        log.close()
        _wait(self._healthy, "mlflow server", timeout)

    def _healthy(self) -> bool:
        return http_ready(self.proc, self.workdir / "mlflow-server.log", "mlflow server",
                          f"{self.url}/health")

    def stop(self, first: signal.Signals = signal.SIGTERM) -> None:
        """`first` (SIGTERM: a graceful stop) to the server's process group, by its pid; SIGKILL
        after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((first, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc = None


class S3Server:
    """moto's S3-compatible server (`moto_server`, from `moto[server]`), with one bucket.

    A real HTTP server speaking S3, not a mock of the client: the code under test reaches it as
    it would AWS, through `AWS_ENDPOINT_URL` and the `AWS_*` credentials in `env`.
    """

    BUCKET = "checkpoints"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "test-key",
                    "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_DEFAULT_REGION": "us-east-1"}
        log = open(workdir / "moto-server.log", "ab")  # noqa: SIM115 (the child owns it)
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p",
             str(self.port)], cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        _wait(self._healthy, "moto server", 60)
        request = urllib.request.Request(f"{self.url}/{self.BUCKET}", method="PUT")
        urllib.request.urlopen(request, timeout=10).close()  # create the bucket

    def _healthy(self) -> bool:
        return http_ready(self.proc, self.workdir / "moto-server.log", "moto_server",
                          f"{self.url}/moto-api/")

    def keys(self, prefix: str = "") -> list[str]:
        """The bucket's object keys under `prefix` (S3's ListObjectsV2, as XML)."""
        with urllib.request.urlopen(f"{self.url}/{self.BUCKET}?list-type=2&prefix={prefix}",
                                    timeout=10) as r:
            text = r.read().decode()
        return [part.split("</Key>")[0] for part in text.split("<Key>")[1:]]

    def stop(self) -> None:
        """SIGTERM by its pid, SIGKILL after 10 s."""
        if self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """An S3-compatible server for the session, its bucket `S3Server.BUCKET` (skipped where
    moto's server is not installed: `pip install moto[server]`, in the dev extra)."""
    if not (Path(sys.executable).parent / "moto_server").exists():
        pytest.skip("moto's S3 server is not installed (pip install 'moto[server]')")
    server = S3Server(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster for the session (skipped where PostgreSQL is missing)."""
    if pg_bindir() is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs it: apt-get install postgresql)")
    server = Postgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def mlflow_server(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[MlflowServer]:
    """`mlflow server` on the cluster's `mlflow` database, artifacts served from a temp folder."""
    server = MlflowServer(postgres.url("mlflow", "postgresql+psycopg"),
                          tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)  # the session's end: nothing left to answer


AUTH_ADMIN = "admin"


@pytest.fixture(scope="session")
def mlflow_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """`mlflow server --app-name basic-auth` (SQLite stores): it answers 401 to a wrong password.
    Its admin's password is `server.admin_password`."""
    workdir = tmp_path_factory.mktemp("mlflow-auth")
    password = "adm-" + secrets.token_hex(8)
    (workdir / "auth.ini").write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{workdir}/auth.db\n"
        f"admin_username = {AUTH_ADMIN}\nadmin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    backend = f"sqlite:///{workdir}/mlflow.db"
    create_store(backend)  # as a sweep makes one: a copy, not MLflow's migrations in the server
    server = MlflowServer(backend, workdir, app_name="basic-auth",
                          env={"MLFLOW_AUTH_CONFIG_PATH": str(workdir / "auth.ini"),
                               "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)})
    server.admin_password = password  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs, mounted for the test (root only) and unmounted after it: what a full
    disk does to a store is only seen on one. `fill(full_disk)` fills it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(mount)], check=True,
                   timeout=30)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A real tmpfs mounted read-only for the test (root only): root writes through a folder's
    permissions, not through a read-only mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    mount = tmp_path / "read-only"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1M", "tmpfs", str(mount)],
                   check=True, timeout=30)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


def fill(folder: Path) -> None:
    """Write into `folder` until its file system says it is full (ENOSPC). One that is full
    already (the sweep under test may have filled it) refuses the file itself: also full."""
    try:
        with open(folder / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
