"""Starting Ray in the background: Ray's start (seconds: its processes, then Ray Tune's import)
overlaps what the driver does meanwhile (compiling or loading the kernels, the rest of its
preparation) instead of adding to it.

``RayStart`` imports ``nncli.sweep.tuning`` (Ray and Ray Tune) and enters its ``ray_session`` on
a thread of its own; ``ready()`` waits for it and hands the module over, ``close()`` leaves the
session (shutting down a Ray this sweep started) whether or not it was ever waited for. Ray
notices it was started on a thread other than the main one and leaves the signal handlers
alone: the driver keeps its own (SIGINT for Ray Tune, SIGTERM as Ctrl-C).
"""

from __future__ import annotations

import threading
from types import ModuleType

from nncli.errors import UsageError

INSTALL_HINT = "nncli sweep needs Ray Tune: pip install 'nncli[sweep]'"


def import_ray() -> None:
    """Import Ray itself (a quarter of a second; Ray Tune, three times as long, is imported on
    the thread), or raise the UsageError naming the extra to install. Call it before Ray's
    output is redirected (nncli.sweep.redirect): Ray's log handler keeps the ``sys.stderr`` of
    the moment Ray is imported, which must be the one the redirection points at its log."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UsageError(INSTALL_HINT) from None


class RayStart:
    """Ray being started (or joined at ``address``) on a thread; see the module docstring.

    The thread holds the session from start to end: Ray's connection to its object store
    breaks when the thread that started it ends (measured with Ray 2.60: a ``ray.put`` in the
    main thread afterwards ends the process with exit status 1), so it waits, session open,
    until ``close()``."""

    def __init__(self, address: str | None, cpus: int | None = None) -> None:
        self.address, self.cpus = address, cpus
        self.tuning: ModuleType | None = None
        self.error: BaseException | None = None
        self.started, self.stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, name="nncli-ray", daemon=True)

    def __enter__(self) -> "RayStart":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def _hold(self) -> None:
        try:
            from nncli.sweep import tuning

            self.tuning = tuning
            with tuning.ray_session(self.address, self.cpus):
                self.started.set()
                self.stop.wait()
        except ImportError:
            self.error = UsageError(INSTALL_HINT)
        except BaseException as e:  # noqa: BLE001 - raised in the driver's thread by ready()
            self.error = e
        finally:
            self.started.set()

    def ready(self) -> ModuleType:
        """``nncli.sweep.tuning`` once Ray answers; what went wrong on the way is raised here."""
        self.started.wait()
        if self.error is not None:
            raise self.error
        assert self.tuning is not None
        return self.tuning

    def close(self) -> None:
        """Leave the Ray session (shutting down a Ray this sweep started) and end the thread."""
        self.stop.set()
        self.thread.join()
