"""Start and stop a throwaway PostgreSQL cluster for the tests.

`python tests/support/postgres.py start DIR` initializes a cluster in DIR, starts it on a free
loopback port and prints its URL; `stop DIR` stops it. The server refuses to run as root, so
as root the cluster is created and run as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

__all__ = ["find_bin_dir", "start_cluster", "start_server", "stop_cluster"]


def find_bin_dir() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _let_server_user_reach(directory: Path) -> None:
    # Temporary directories are 0700 root: the postgres user needs to pass through them.
    for parent in directory.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def start_cluster(directory: Path) -> str:
    """Create and start a cluster in `directory`; return its asyncpg URL."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
        _let_server_user_reach(directory)
    subprocess.run(
        _as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    (directory / "port").write_text(str(_free_port()))
    return start_server(directory)


def start_server(directory: Path) -> str:
    """Start the server of the cluster in `directory` (made by `start_cluster`) on its port;
    return its asyncpg URL."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    port = int((directory / "port").read_text())
    options = (
        f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(
        _as_server_user(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(directory / "data"),
                "-l",
                str(directory / "log"),
                "-o",
                options,
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"


def stop_cluster(directory: Path) -> None:
    """Stop the cluster in `directory` (fast shutdown)."""
    bin_dir = find_bin_dir()
    if bin_dir is None or not (directory / "data").exists():
        return
    subprocess.run(
        _as_server_user(
            [str(bin_dir / "pg_ctl"), "-D", str(directory / "data"), "-m", "fast", "stop"]
        ),
        check=False,
        capture_output=True,
    )


if __name__ == "__main__":
    action, where = sys.argv[1], Path(sys.argv[2])
    if action == "start":
        print(start_cluster(where))
    elif action == "stop":
        stop_cluster(where)
    else:
        sys.exit(f"usage: {sys.argv[0]} start|stop DIR")
