"""Ray for a sweep: a local instance started and stopped, or a cluster joined (and left), with
Ray's settings for nncli and a one-line error for an address where nobody answers."""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from typing import Iterator

import ray

from nncli.errors import JoinTimeout, UsageError

# How long joining an existing cluster may take before it is an error (the issue: 30 s).
JOIN_SECONDS = 20.0
# Ray's own chatter we do not want: usage reports (there may be no network), the trial folder
# as working directory (nncli passes no relative paths, but a user's --init-from could be one),
# its core's warnings on our stderr, its trial loggers, colour codes in its log
# (nncli.sweep.redirect sends what it prints to the sweep's ray.log).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_CHDIR_TO_TRIAL_DIR": "0",
           "RAY_BACKEND_LOG_LEVEL": "error", "RAY_COLOR_PREFIX": "0",
           "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0"}


@contextmanager
def ray_session(address: str | None, cpus: int | None = None) -> Iterator[None]:
    """A Ray instance for the sweep: started here (and stopped at the end) without
    ``address``, else the cluster at ``address`` (host:port), checked to answer first."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    if ray.is_initialized():
        yield
        return
    if address is not None:
        check_reachable(address)
        # the cluster's workers were started elsewhere: they get the settings with the job
        _join(address, {"env_vars": {k: os.environ[k] for k in RAY_ENV}})
    else:
        # the local instance's workers inherit this environment; a runtime environment would
        # cost each worker a round trip through Ray's runtime-env agent (measured: an actor
        # started in 0.89 s with one, 0.52 s without)
        with _without_monitors():
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
    try:
        yield
    finally:
        if address is None:
            _stop_autoscaler()
        ray.shutdown()


def cpu_slots(threads: int) -> int:
    """How many trials of ``threads`` CPUs each Ray can run at once (at least one)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // max(1, threads))


@contextmanager
def _without_monitors() -> Iterator[None]:
    """ray.init of a local instance without its log monitor (it streams the workers' output to
    the driver, which nncli turns off: log_to_driver=False) and its autoscaler monitor (one
    machine has nothing to autoscale). Each is a Python process importing Ray while Ray
    starts; on 2 cores they slowed ray.init from about 3-5 s to 5-7 s (measured under load;
    ray.shutdown from 0.1-0.6 s to 1.4 s). ray.init has no public switch for them; its
    RayParams does (as ``ray start`` has), so its defaults are changed for this call only,
    and a Ray whose RayParams lacks them starts as it is."""
    from ray._private import parameter

    original = parameter.RayParams.__init__

    def lean(self, *args, **kwargs):
        kwargs.setdefault("include_log_monitor", False)
        kwargs.setdefault("no_monitor", True)
        try:
            original(self, *args, **kwargs)
        except TypeError:   # a Ray without these parameters
            kwargs.pop("include_log_monitor")
            kwargs.pop("no_monitor")
            original(self, *args, **kwargs)

    parameter.RayParams.__init__ = lean
    try:
        yield
    finally:
        parameter.RayParams.__init__ = original


def _stop_autoscaler() -> None:
    """End the local instance's autoscaler monitor at once. ray.shutdown stops it after the GCS,
    and it then spends its whole second of grace trying to tell the GCS it was stopped
    (measured: 1.0 of the 1.35 s ray.shutdown took); one machine has nothing to autoscale."""
    try:
        node = ray._private.worker._global_node  # noqa: SLF001 - no public handle on it
        if node is not None and node.is_head():
            node.kill_monitor(check_alive=False)
    except Exception:  # noqa: BLE001 - a private API: without it, ray.shutdown waits its second
        pass


def _join(address: str, runtime_env: dict) -> None:
    """ray.init on the cluster at ``address``, given JOIN_SECONDS to answer: where something
    other than a Ray head listens, Ray would retry for minutes."""
    failure: list[BaseException] = []

    def connect() -> None:
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False,
                     logging_level="ERROR")
        except BaseException as e:  # noqa: BLE001 - reported below, as one line
            failure.append(e)

    thread = threading.Thread(target=connect, name="nncli-ray-join", daemon=True)
    thread.start()
    thread.join(JOIN_SECONDS)
    if thread.is_alive():
        raise JoinTimeout(f"no Ray cluster answered at {address} within {JOIN_SECONDS:.0f} s; "
                          f"is a Ray head ('ray start --head') listening there?")
    if failure:
        e = failure[0]
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"cannot join the Ray cluster at {address}: {first}")


def check_reachable(address: str) -> None:
    """A one-line error at once when nothing answers at ``address`` (host:port), where
    ray.init would wait for minutes."""
    host, _, port = address.rpartition(":")
    if address.startswith(("ray://", "auto")) or not host:
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ValueError:
        raise UsageError(f"--address {address}: expected HOST:PORT") from None
    except OSError as e:
        raise UsageError(f"cannot reach the Ray cluster at {address} "
                         f"({e.strerror or e}); start it with 'ray start --head "
                         f"--port {port}' there") from None
    # Ray itself connects to 127.0.0.1/localhost as this machine's network address: a head
    # listening on the loopback only (--node-ip-address 127.0.0.1) answers the check above,
    # and ray.init would then retry for many minutes
    try:
        from ray._private.services import canonicalize_bootstrap_address

        ray_address = canonicalize_bootstrap_address(address) or address
    except Exception:  # noqa: BLE001 - a private helper: without it, no second check
        return
    if ray_address != address:
        try:
            socket.create_connection(tuple(ray_address.rsplit(":", 1)), timeout=5).close()
        except (OSError, ValueError):
            raise UsageError(f"--address {address}: Ray connects to it as {ray_address} "
                             f"(this machine's network address), where nothing answers; "
                             f"start the head without --node-ip-address 127.0.0.1") from None
