"""`bpd` for the runners and tools the tests drive: the command run by the worker's tests/bpd_zygote.py (see
there), this process standing in for it (its signals sent on, its exit status taken); where no zygote serves
(BPD_TEST_ZYGOTE unset or gone) or the environment differs where imports read it, the installed `bpd`
(BPD_TEST_BPD) in its place. Only the standard library: it starts in some 30 ms."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpd_zygote import same_imports  # noqa: E402


def start(path: str, argv: list[str], env: dict, cwd: str, fds: list[int]) -> tuple[socket.socket, int] | None:
    """The command started by the zygote at `path` with these descriptors as its stdin, stdout and stderr: the
    connection (its next line the status) and the command's pid; None where no zygote serves or the environment
    differs from the zygote's where imports read it (BPD_TEST_ZYGOTE_ENV)."""
    if not same_imports(env, json.loads(os.environ.get("BPD_TEST_ZYGOTE_ENV", "{}"))):
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    req = json.dumps({"argv": argv, "env": env, "cwd": cwd}).encode()
    socket.send_fds(conn, [struct.pack("!I", len(req)) + req], fds)
    return conn, int(json.loads(read_line(conn))["pid"])


def read_line(conn: socket.socket) -> bytes:
    """One answer line (b"" where the zygote's handler has gone)."""
    out = b""
    while not out.endswith(b"\n"):
        more = conn.recv(1)
        if not more:
            return b""
        out += more
    return out


def main() -> None:
    real = os.environ["BPD_TEST_BPD"]
    path = os.environ.get("BPD_TEST_ZYGOTE")
    pending: list[int] = []  # signals that came before the command had started: sent on once it has
    conn: socket.socket | None = None

    def forward(sig, _frame):
        if conn is None:
            pending.append(sig)
        else:
            conn.sendall((json.dumps({"signal": sig}) + "\n").encode())

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    started = start(path, [real, *sys.argv[1:]], dict(os.environ), os.getcwd(), [0, 1, 2]) if path else None
    if started is None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
        if pending:  # a fresh `bpd` would have had it: this process ends by it
            signal.signal(pending[0], signal.SIG_DFL)
            os.kill(os.getpid(), pending[0])
        if os.path.dirname(os.path.abspath(real)) == os.path.dirname(os.path.abspath(sys.argv[0])):
            sys.exit(f"tests/bpd_client.py: BPD_TEST_BPD is this launcher ({real}), not the installed bpd")
        os.execv(real, [real, *sys.argv[1:]])
    conn, _ = started
    for sig in pending:
        forward(sig, None)
    line = read_line(conn)
    status = json.loads(line)["status"] if line else 1
    if status < 0:  # ended by a signal: this process ends by it too
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    sys.exit(status)


if __name__ == "__main__":
    main()
