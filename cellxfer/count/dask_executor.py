"""A Dask distributed executor (the ``dask`` extra): per-item jobs on an existing cluster or a LocalCluster.

Follows the :mod:`cellxfer.executors` contract: ``map(fn, items, workers)`` yields
``(item, result_or_exception)`` in completion order. ``address`` is a scheduler address
(``tcp://host:8786``, e.g. of a dask-jobqueue SLURM/LSF cluster), ``local:N`` for a LocalCluster of N
single-threaded worker processes, or None for ``$CELLXFER_SCHEDULER`` / ``local:<workers>``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from cellxfer.errors import CellxferError, InputError

MISSING = "--scheduler needs the `dask` extra: pip install 'cellxfer[dask]' (distributed, dask-jobqueue)"


def import_distributed():
    try:
        import distributed
    except (ImportError, OSError):
        raise CellxferError(MISSING) from None
    return distributed


def parse_local(address: str) -> int | None:
    """N for ``local:N`` (``local`` alone: 0 = one per core), None for a remote address."""
    if address == "local":
        return 0
    if not address.startswith("local:"):
        return None
    try:
        n = int(address.split(":", 1)[1])
    except ValueError:
        n = -1
    if n < 0:
        raise InputError(f"--scheduler {address}: expected local:N with N a number of workers (e.g. local:4)")
    return n


@contextlib.contextmanager
def _workers_ignore_sigint():
    """Ctrl-C belongs to cellxfer, as with ``--workers``: the worker processes a LocalCluster starts here
    (spawned: a new interpreter) inherit SIGINT *ignored*, so Python installs no KeyboardInterrupt in them,
    and the terminal's SIGINT to the process group reaches only this process, which closes the cluster and
    prints its one ``interrupted`` line (each worker printed a traceback first). A Ctrl-C in the second or
    two the cluster takes to start is ignored; outside the main thread nothing is changed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _silence_distributed() -> None:
    import logging

    logging.getLogger("distributed").setLevel(logging.CRITICAL)


def _quiet_workers(client) -> None:
    """Before a local cluster is closed early: its workers log nothing more (each would warn that its
    cancelled task "ended with CancelledError"), nor does this process's ``distributed``."""
    _silence_distributed()
    try:
        client.run(_silence_distributed)
    except Exception:  # noqa: BLE001 - a worker already gone: nothing to silence
        pass


@contextlib.contextmanager
def _sigint_at_poll_points():
    """While a map waits on the cluster, Ctrl-C sets the yielded :class:`threading.Event` instead of raising
    KeyboardInterrupt wherever the main thread happens to be; :func:`_as_completed` raises it at its next poll.
    An asynchronous KeyboardInterrupt could land inside ``distributed``'s own code: in its gc callback
    (``GCDiagnosis._gc_callback``) Python *ignores* it (prints "Exception ignored in" and goes on), so the
    Ctrl-C was lost and the run carried on (a CI run timed out this way); in ``sync()`` it leaves callbacks
    that log tracebacks. The old handler is back when the block ends, before the cluster is closed, so a
    second Ctrl-C during the close interrupts as usual. Outside the main thread nothing is changed (None)."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    interrupted = threading.Event()
    old = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.set())
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, old)


def _as_completed(distributed, futures, interrupted: threading.Event | None = None, poll_s: float = 0.05,
                  more: Callable[[], list] | None = None):
    """``distributed.as_completed(futures)``, waited on in short sleeps so that a Ctrl-C caught by
    :func:`_sigint_at_poll_points` (``interrupted`` set) is raised here as KeyboardInterrupt, in this
    (the main) thread, within ``poll_s``, and at no other place; one pressed while the last results were
    handled is raised after them (a Ctrl-C is never lost). ``more()``, called after each future is handled,
    returns futures to wait on too (the next items of a long map)."""
    import time

    pending = distributed.as_completed(futures)
    while not pending.is_empty():
        if interrupted is not None and interrupted.is_set():
            raise KeyboardInterrupt
        if pending.has_ready():
            yield next(pending)
            for fut in (more() if more is not None else ()):
                pending.add(fut)
        else:
            time.sleep(poll_s)
    if interrupted is not None and interrupted.is_set():  # pressed while the last results were handled
        raise KeyboardInterrupt


#: items submitted to the cluster ahead of the results handled: at least this many, and 4 per worker thread
IN_FLIGHT_MIN = 64


@dataclass(frozen=True)
class DaskExecutor:
    name: str = "dask"
    description: str = "a Dask distributed cluster (--scheduler ADDRESS or local:N; the dask extra)"
    address: str | None = None

    def available(self) -> str | None:
        """None when ``distributed`` imports, else the one-line reason with the fix."""
        import importlib.util

        return None if importlib.util.find_spec("distributed") is not None else MISSING

    def connect(self, workers: int = 0):
        """``(client, cluster or None)``."""
        distributed = import_distributed()
        address = self.address or os.environ.get("CELLXFER_SCHEDULER") or f"local:{workers}"
        n = parse_local(address)
        if n is not None:
            from cellxfer.executors import default_workers

            with _workers_ignore_sigint():
                # no dashboard, and the scheduler's own HTTP endpoints (health, metrics) on a free port: on
                # its default, 8787, a second cluster on the machine (a Jupyter session's, another run's)
                # printed a 4-line "Port 8787 is already in use" warning into the run's output
                cluster = distributed.LocalCluster(n_workers=n or workers or default_workers(), threads_per_worker=1,
                                                   processes=True, dashboard_address=None,
                                                   scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"})
            return distributed.Client(cluster), cluster
        try:
            return distributed.Client(address, timeout="20s"), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"--scheduler {address}: cannot reach the Dask scheduler ({exc}); check the address "
                             f"(tcp://HOST:8786) or use local:N") from None

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], workers: int = 0) -> Iterator[tuple[Any, Any]]:
        import logging

        distributed = import_distributed()
        items = list(items)
        if not items:
            return
        # A Ctrl-C inside distributed's sync() leaves a cancel callback on the client's event loop that fails
        # with a NameError (distributed.utils.sync), which tornado logs with a traceback on the loop's thread,
        # at any moment around the KeyboardInterrupt; errors that matter reach this process through the futures.
        logging.getLogger("tornado.application").setLevel(logging.CRITICAL)
        client, cluster = self.connect(workers)
        try:
            from cellxfer.imageio import carry_plane_options

            fn, ahead = carry_plane_options(fn), iter(items)
            window = max(IN_FLIGHT_MIN, 4 * sum(client.nthreads().values()))
            owner: dict = {}  # key -> item of the futures in flight: a bounded window, not every item at once

            def more() -> list:
                """The next items' futures, once half the window is done (a 100,000-image map held every
                future and its result until the end: 34 KB an image in this process)."""
                chunk = list(itertools.islice(ahead, window - len(owner))) if len(owner) <= window // 2 else []
                futures = client.map(fn, chunk, pure=False) if chunk else []
                owner.update((f.key, item) for f, item in zip(futures, chunk))
                return futures

            with _sigint_at_poll_points() as interrupted:
                for fut in _as_completed(distributed, more(), interrupted, more=more):
                    item = owner.pop(fut.key)
                    if fut.status == "error":
                        yield item, fut.exception()
                    else:
                        yield item, fut.result()
        except BaseException:  # Ctrl-C, or the consumer gone: what is cancelled now is no news to the user
            if cluster is not None:
                _quiet_workers(client)
            raise
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
