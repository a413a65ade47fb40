"""A real PostgreSQL server (Debian's) in a temporary directory on a free loopback port.

PostgreSQL refuses to run as root, so when the tests run as root (dev machines and CI here) the
server runs as the `postgres` system user (created by Debian's package; created here if absent)
via `runuser`, and the temporary directory is chowned to it. The superuser `postgres` logs in
over TCP with a random password (scram-sha-256); durability is switched off since the data is
throwaway.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from ._proc import SCRIPTS, free_port, log_tail

ENSURE_SCRIPT = SCRIPTS / "ensure-postgres.sh"
SUPERUSER = "postgres"


def postgres_bin_dir() -> Path:
    """The server's bin dir, installing Debian's package first if needed (via the script)."""
    res = subprocess.run(
        ["bash", str(ENSURE_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )
    if res.returncode != 0 or not res.stdout.strip():
        raise RuntimeError(f"{ENSURE_SCRIPT} failed with exit code {res.returncode}")
    return Path(res.stdout.strip().splitlines()[-1])


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


@dataclass
class PostgresServer:
    """A running server. `dsn` is a SQLAlchemy/Optuna URL for the `postgres` database;
    `libpq_url(db)` is the plain `postgresql://` form psycopg2.connect() takes."""

    host: str
    port: int
    user: str
    password: str
    workdir: Path
    _counter: int = field(default=0, repr=False)

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg2") -> str:
        """A URL for `database`; driver 'postgresql' gives the libpq form."""
        return (
            f"{driver}://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{database}"
        )

    @property
    def dsn(self) -> str:
        return self.url()

    def libpq_url(self, database: str = "postgres") -> str:
        return self.url(database, driver="postgresql")

    def new_database(self, prefix: str = "t") -> str:
        """Create a fresh, empty database and return its SQLAlchemy URL."""
        import psycopg2  # the workloads/operator extras install it

        self._counter += 1
        name = f"{prefix}_{self._counter}_{secrets.token_hex(4)}".lower()
        conn = psycopg2.connect(self.libpq_url())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)


@contextmanager
def start_postgres(start_timeout: float = 60.0) -> Iterator[PostgresServer]:
    """initdb + pg_ctl start in a temporary directory; pg_ctl stop -m fast afterwards."""
    bin_dir = postgres_bin_dir()
    # Not pytest's tmp_path: its parents are mode 0700 and the postgres user must traverse.
    root = Path(tempfile.mkdtemp(prefix="gen5nas-pg-"))
    data = root / "data"
    sock_dir = root
    log = root / "postgres.log"
    password = secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")

    run_prefix: list[str] = []
    if os.geteuid() == 0:
        owner = _ensure_os_user("postgres")
        for p in (root, pwfile):
            os.chown(p, owner.pw_uid, owner.pw_gid)
        run_prefix = ["runuser", "-u", owner.pw_name, "--"]
    root.chmod(0o700)

    def run(*argv: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*run_prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False,
            cwd=root,
        )  # fmt: skip

    port = free_port()
    started = False
    try:
        res = run(
            str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C",
            "--no-sync",
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{res.stdout}\n{res.stderr}")
        opts = (
            f"-p {port} -k {sock_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        res = run(
            str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w",
            "-t", str(int(start_timeout)), "start",
            timeout=start_timeout + 30,
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{res.stdout}\n{res.stderr}\n{log_tail(log)}")
        started = True
        server = PostgresServer(
            host="127.0.0.1", port=port, user=SUPERUSER, password=password, workdir=root
        )
        _wait_for_login(server, start_timeout, log)
        yield server
    finally:
        if started:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        with contextlib.suppress(OSError):
            shutil.rmtree(root)


def _wait_for_login(server: PostgresServer, timeout: float, log: Path) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg2.connect(server.libpq_url(), connect_timeout=2).close()
            return
        except psycopg2.OperationalError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"postgres never accepted logins: {exc}\n{log_tail(log)}"
                ) from exc
            time.sleep(0.2)
