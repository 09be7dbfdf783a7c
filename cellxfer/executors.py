"""Executors run independent per-item jobs (one image, one file) and yield results as they finish.

Contract: ``executor.map(fn, items, workers)`` calls ``fn(item)`` for every item (``fn`` and items must
pickle for process-based executors) and yields ``(item, result_or_exception)`` pairs in completion
order; an exception in one item is yielded, never raised, so a batch goes on past a bad file.
An executor that needs optional packages has ``available() -> str | None`` (None when usable, else a
one-line reason naming the extra to install).

Process pools started here die with their parent: each worker asks the kernel for SIGTERM when its
parent goes (Linux ``prctl(PR_SET_PDEATHSIG)``), or elsewhere watches its parent pid from a thread, so
a ``kill -9`` of ``cellxfer`` never leaves workers running. Ctrl-C belongs to the parent: workers ignore
SIGINT (a terminal sends it to the whole process group), and the parent, interrupted or left by its
consumer, cancels what has not started and ends the workers at once (:func:`_stop_now`) instead of
waiting for the queued items.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from cellxfer.hookspecs import hookimpl


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Process-pool initializer: end this worker (SIGTERM) when the process that started it dies, and
    leave Ctrl-C (SIGINT) to that process (see module docs). Ended by SIGTERM (its parent gone, or
    :func:`_stop_now`), a worker first deletes the temporary it is writing (:mod:`cellxfer.atomic`)."""
    import functools

    from cellxfer.atomic import remove_live_temporaries  # imported now: the SIGTERM handler must not import

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, functools.partial(_end_now, remove_live_temporaries))
    if hasattr(signal, "pthread_sigmask"):  # started with it blocked (_sigint_blocked): ignored from now on
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os.kill(os.getpid(), signal.SIGTERM)
                return
        except (OSError, AttributeError):  # no libc prctl: fall back to watching
            pass
    threading.Thread(target=_watch_parent, args=(parent,), name="cellxfer-parent-watch", daemon=True).start()


def _end_now(remove: Callable[[], None], signum, frame) -> None:
    """SIGTERM handler of a pool worker: delete its live temporaries (``remove``, bound by
    :func:`die_with_parent`, so the handler imports nothing), then exit, whatever happens in between. The exit
    is in ``finally``: an exception from the handler would surface inside the item the worker is
    running, which the pool reports as that item's result, and the worker would go on to the next item and
    outlive its pool. (It happened: a second SIGTERM, from the pool's own shutdown, landed while the first
    handler was still importing :mod:`cellxfer.atomic`; the nested import failed on the half-made module, and
    one Ctrl-C in six left a worker running and the parent waiting on it.)"""
    try:
        remove()
    finally:
        os._exit(128 + signum)


@contextlib.contextmanager
def _sigint_blocked():
    """Hold SIGINT back in this thread while it may start a worker (a pool forks its workers from the
    thread that submits): the worker starts with SIGINT blocked until :func:`die_with_parent` ignores
    it, so a Ctrl-C at that moment reaches only the parent."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _watch_parent(parent: int, every_s: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(every_s)
    os.kill(os.getpid(), signal.SIGTERM)


@dataclass(frozen=True)
class LocalExecutor:
    """In-process for ``workers == 1``, else a local process pool with a bounded queue of pending jobs."""

    name: str = "local"
    description: str = "this machine: in-process (1 worker) or a process pool"

    def available(self) -> str | None:
        return None

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], workers: int = 0) -> Iterator[tuple[Any, Any]]:
        workers = workers or default_workers()
        if workers == 1:
            for item in items:
                try:
                    yield item, fn(item)
                except Exception as exc:  # noqa: BLE001 - reported per item
                    yield item, exc
            return
        from cellxfer.imageio import carry_plane_options

        items, fn = iter(items), carry_plane_options(fn)
        pool = ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent)
        try:
            pending = {}
            def fill():
                while len(pending) < 4 * workers:
                    try:
                        item = next(items)
                    except StopIteration:
                        return
                    with _sigint_blocked():
                        pending[pool.submit(fn, item)] = item
            fill()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    item = pending.pop(fut)
                    exc = fut.exception()
                    yield item, (exc if exc is not None else fut.result())
                fill()
        except BaseException:  # Ctrl-C, or the consumer gone (GeneratorExit)
            _stop_now(pool)
            raise
        pool.shutdown(wait=True)


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """Cancel ``pool``'s items not yet started and end its workers (SIGTERM) now: ``shutdown(wait=True)``
    would first run every queued item (a run's worth of diffusion images, say), and on CPython before 3.12
    a shutdown racing a dying worker can deadlock (gh-125451). Outputs are written atomically and a worker
    ended mid-item deletes its temporary (:func:`die_with_parent`), so nothing partial is left."""
    if hasattr(pool, "terminate_workers"):  # Python 3.14+
        pool.terminate_workers()
    else:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
    # joined here, not at interpreter exit, where CPython 3.11 may write to the pool's closed wake-up pipe
    pool.shutdown(wait=True, cancel_futures=True)


@hookimpl
def cellxfer_executors():
    return [LocalExecutor()]


def executor_for(scheduler: str | None):
    """The registered executor a command's ``--scheduler`` picks: none given -> ``local`` (this machine),
    ``local:N`` or a scheduler ADDRESS -> ``dask`` bound to it. Every command that runs per-item jobs
    (``count``, ``synth``, ``stylize``) asks here, so a plugin replacing an executor replaces it everywhere. Raises
    :class:`cellxfer.errors.InputError` naming the extra to install when the executor is unusable."""
    import dataclasses

    from cellxfer.errors import InputError
    from cellxfer.plugins import get_registry

    executor = get_registry().get("cellxfer_executors", "dask" if scheduler else "local")
    reason = executor.available() if hasattr(executor, "available") else None
    if reason:
        raise InputError(reason)
    if scheduler and dataclasses.is_dataclass(executor) and hasattr(executor, "address"):
        executor = dataclasses.replace(executor, address=scheduler)
    return executor
