"""A `bpd` launcher for the tests whose heavy third-party imports are done once.

A `bpd` command that trains, exports or evaluates spends some 2-5 s of CPU importing torch (and the compiler
stack torch.optim loads), gymnasium, MuJoCo and matplotlib before its first line of work; the suite starts
hundreds of them, from the tests (tests/conftest.py's run_bpd) and from the runners and tools they drive
(through tests/bpd_client.py, which conftest makes the `bpd` those start: BPD_EXECUTABLE, bpd/io.py).

This process imports those libraries, and only those (none of the project's modules, so that a module that
forgets an import of its own fails as it would in a fresh process), and serves a Unix socket. A client sends one
request: a 4-byte length and a JSON object {"argv", "env", "cwd"}, with its stdin, stdout and stderr as file
descriptors (SCM_RIGHTS). A handler process forks the command's process, which takes the request's environment,
directory and descriptors and runs `bpd_app.cli.main` as the installed `bpd` script does, exiting as the
interpreter would (an uncaught exception's traceback on stderr and status 1, sys.exit's code or message). The
handler answers {"pid"} once the command is started and {"status"} once it has ended (the exit code, or minus
the signal that ended it); a line {"signal": N} from the client is sent on to the command, and a client that goes
away takes the command with it (SIGKILL), as a process group's signal would.

Started with the environment of a pytest worker; clients send only requests whose environment agrees with that
one wherever the libraries read it at import (`same_imports`), so that what they read is what a fresh process
would have read. The process ends when its stdin closes (the worker has gone)."""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import struct
import sys
import threading

# environment variables that third-party libraries read when imported, or that decide what is imported
IMPORT_VARS = ("PYTHON", "OMP_", "MKL_", "KMP_", "OPENBLAS", "ATEN_", "TORCH", "PYTORCH", "CUDA", "MUJOCO", "MPL",
               "GYM", "VIRTUAL_ENV", "LD_")


def same_imports(a: dict, b: dict) -> bool:
    """Whether two environments agree on every variable an import may read (PYTHONUNBUFFERED aside)."""
    keys = {k for k in (*a, *b) if k.startswith(IMPORT_VARS) and k != "PYTHONUNBUFFERED"}
    return all(a.get(k) == b.get(k) for k in keys)


def _imports() -> None:
    import gymnasium  # noqa: F401
    import matplotlib
    import mujoco  # noqa: F401
    import numpy  # noqa: F401
    import torch
    import torch._dynamo  # noqa: F401  (torch.optim's first optimizer imports it: about 2 s)
    import torch.optim  # noqa: F401

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401

    del torch


def _command(req: dict, fds: list[int]) -> None:
    """The command's process: never returns."""
    code: object = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        sys.argv = list(req["argv"])
        sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))  # the script's directory, as for `bpd`
        try:
            from bpd_app.cli import main

            code = main()
        except SystemExit as e:
            code = e.code
        except BaseException:
            sys.excepthook(*sys.exc_info())
            code = 1
        if code is None:
            code = 0
        elif not isinstance(code, int):  # sys.exit("message"): the message on stderr, status 1
            print(code, file=sys.stderr)
            code = 1
        threading._shutdown()  # type: ignore[attr-defined]  # as at the interpreter's exit: non-daemon threads
        atexit._run_exitfuncs()
    finally:
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except Exception:
                pass
        os._exit(code if isinstance(code, int) else 1)


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    if len(fds) != 3 or len(data) < 4:
        raise ValueError("a request is a length, JSON and three file descriptors")
    (n,) = struct.unpack("!I", data[:4])
    data = data[4:]
    while len(data) < n:
        more = conn.recv(n - len(data))
        if not more:
            raise ValueError("the client went away mid-request")
        data += more
    return json.loads(data), list(fds)


def _handle(conn: socket.socket) -> None:
    """A handler process: one request, its command, the answers."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    req, fds = _recv_request(conn)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _command(req, fds)
    for fd in fds:
        os.close(fd)
    conn.sendall((json.dumps({"pid": pid}) + "\n").encode())
    buf = b""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            conn.sendall((json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n").encode())
            return
        if select.select([conn], [], [], 0.05)[0]:
            more = conn.recv(4096)
            if not more:  # the client has gone: the command goes too
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            buf += more
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                os.kill(pid, int(json.loads(line)["signal"]))


def main() -> None:
    path = sys.argv[1]
    _imports()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the handlers are reaped as they end
    print("ready", flush=True)
    while True:
        ready = select.select([srv, sys.stdin], [], [])[0]
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            break
        if srv in ready:
            conn, _ = srv.accept()
            if os.fork() == 0:
                srv.close()
                try:
                    _handle(conn)
                finally:
                    os._exit(0)
            conn.close()
    srv.close()
    os.unlink(path)


if __name__ == "__main__":
    main()
