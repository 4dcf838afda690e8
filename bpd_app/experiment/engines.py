"""Where cells run: local worker threads or Ray tasks, each behind the same submit / wait / stop / shutdown."""

from __future__ import annotations

import os

from bpd.errors import BpdError
from bpd_app.experiment.cells import (
    CANCELLED,
    StageFailed,
    StageStopped,
    execute_cell,
    prepare_env,
    start_ray_task,
    stop_stages,
)
from bpd_app.experiment.plan import Plan, load_plan


def _local_engine(plan: Plan, workers: int):
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
    from concurrent.futures import wait as fwait

    pool = ThreadPoolExecutor(max(1, workers))

    def submit(job):
        kind, key = job
        if kind == "prepare":
            return pool.submit(_prepare_job, str(plan.path), key, str(plan.runs))
        return pool.submit(execute_cell, str(plan.path), key, str(plan.runs))

    def wait(handles, first=False):
        if not first:
            fwait(handles)
            return [(h, _outcome(h)) for h in handles]
        done, _ = fwait(handles, return_when=FIRST_COMPLETED)
        return [(h, _outcome(h)) for h in done]

    def stop(handles, signum, why):  # each running stage gets the runner's signal; its cell records itself stopped
        stop_stages(signum, why)

    return submit, wait, stop, lambda: pool.shutdown(wait=True, cancel_futures=True)


def _outcome(fut):
    try:
        r = fut.result()
    except Exception as e:
        return None, f"{e.__class__.__name__}: {e}"
    if isinstance(r, tuple):  # prepare jobs
        return r
    return r, None


def _prepare_job(plan_path: str, env: str, runs: str) -> tuple:
    try:
        prepare_env(load_plan(plan_path, runs), env)
        return env, None
    except (StageFailed, StageStopped) as e:
        return None, str(e)


def ray_module():
    """Ray, or one line saying how to install it (checked before a run says what it will do)."""
    try:
        import ray
    except ImportError:
        raise BpdError("--engine ray needs Ray: pip install -e '.[ray]' in the bpd checkout") from None
    return ray


def _ray_engine(plan: Plan, workers: int, address: str | None):
    ray = ray_module()
    addr = address or os.environ.get("RAY_ADDRESS")
    if addr and addr not in ("auto", "local"):
        _probe_ray(addr)
    try:
        if addr:
            ray.init(address=addr, log_to_driver=False, include_dashboard=False)
        else:
            ray.init(num_cpus=max(1, workers), log_to_driver=False, include_dashboard=False)
    except Exception as e:
        raise BpdError(f"cannot start or reach Ray{f' at {addr}' if addr else ''}: {str(e).splitlines()[0]}") from None
    cell_task = ray.remote(num_cpus=1, max_retries=0)(_ray_cell)
    prep_task = ray.remote(num_cpus=1, max_retries=0)(_ray_prepare)

    def submit(job):
        kind, key = job
        task = prep_task if kind == "prepare" else cell_task
        return task.remote(str(plan.path.resolve()), key, str(plan.runs.resolve()))

    def wait(handles, first=False):
        if not first:
            ready = handles
        else:
            ready, _ = ray.wait(handles, num_returns=1)
        out = []
        for h in ready:
            try:
                r = ray.get(h)
                out.append((h, r if isinstance(r, tuple) else (r, None)))
            except Exception as e:
                out.append((h, _ray_outcome(ray, e)))
        return out

    def stop(handles, signum, why):  # each task cancelled (its stage stopped, its cell recorded interrupted), awaited
        for h in handles:
            ray.cancel(h)
        if handles:
            ray.wait(handles, num_returns=len(handles), timeout=STOP_GRACE)

    return submit, wait, stop, ray.shutdown


STOP_GRACE = 30.0  # seconds the Ray tasks of a stopped runner have to stop their stages and record their cells


def _ray_cell(plan_path: str, key: str, runs: str) -> dict:
    """execute_cell as a Ray task: a worker that ran a task cancelled before holds that stop, cleared here."""
    start_ray_task()
    return execute_cell(plan_path, key, runs)


def _ray_prepare(plan_path: str, env: str, runs: str) -> tuple:
    start_ray_task()
    return _prepare_job(plan_path, env, runs)


def _ray_outcome(ray, e: Exception) -> tuple:
    """A Ray task that raised: a cancelled one, or one whose worker or node died (killed, out of memory), is a cell
    stopped, which the next run resumes ({"state": "interrupted"}); any other is an error."""
    line = (str(e).strip().splitlines() or [""])[0]  # a force-cancelled task's error has no message
    what = f"{e.__class__.__name__}{': ' + line if line else ''}"
    x = ray.exceptions
    if isinstance(e, x.TaskCancelledError):
        return {"state": "interrupted", "error": f"stopped by {CANCELLED}"}, None
    if isinstance(e, (x.WorkerCrashedError, x.NodeDiedError, x.OutOfMemoryError, x.LocalRayletDiedError)):
        return {"state": "interrupted", "error": f"its Ray worker died ({what})"}, None
    return None, what


RAY_CONNECT_TIMEOUT = 10.0  # seconds a Ray address has to accept a connection


def _probe_ray(addr: str) -> None:
    """A Ray address that does not accept a connection in RAY_CONNECT_TIMEOUT is one line, not a hang."""
    import socket

    hostport = addr.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BpdError(f"Ray address {addr!r}: expected HOST:PORT (or ray://HOST:PORT)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT).close()
    except OSError as e:
        raise BpdError(f"Ray at {addr} does not answer (no connection within {RAY_CONNECT_TIMEOUT:.0f} s: "
                       f"{e.strerror or e.__class__.__name__})") from None
