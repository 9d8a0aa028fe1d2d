"""joblib backends beyond one machine: Dask (``--backend dask --scheduler tcp://…``) and Ray.

The engine always hands its tiles to joblib; this module only makes the named backend available
for the duration of an audit. Nothing here runs a cluster of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import joblib

from leakcheck.settings import SettingsError

LOCAL_BACKENDS = ("threading", "loky", "multiprocessing", "sequential")


def parallel_backend_argument(backend: str) -> str | None:
    """The ``backend=`` to give ``joblib.Parallel``: local backends by name; cluster backends
    as ``None`` so that the one :func:`joblib_backend` configured is used (naming ``"dask"``
    again makes joblib 1.6 pass its ``nesting_level`` on to Dask's ``submit``, which fails)."""
    return backend if backend in LOCAL_BACKENDS else None


@contextmanager
def joblib_backend(backend: str, scheduler: str | None = None) -> Iterator[None]:
    """Make ``backend`` usable by ``joblib.Parallel(backend=backend)`` inside the block.

    ``dask`` connects a ``distributed.Client`` to ``scheduler`` (or starts a local cluster when
    none is given); ``ray`` registers Ray's joblib backend (``ray.init`` must be reachable).
    """
    if backend in LOCAL_BACKENDS:
        yield
        return
    if backend == "dask":
        try:
            from distributed import Client
        except ImportError:
            raise SettingsError(
                "--backend dask needs the dask extra: pip install 'leakcheck-images[dask]'"
            ) from None
        client = Client(scheduler) if scheduler else Client(processes=False)
        try:
            with joblib.parallel_config(backend="dask"):
                yield
        finally:
            client.close()
        return
    if backend == "ray":
        try:
            from ray.util.joblib import register_ray
        except ImportError:
            raise SettingsError("--backend ray needs ray: pip install 'ray[default]'") from None
        register_ray()
        yield
        return
    raise SettingsError(f"unknown backend {backend!r}; choose threading, loky, dask or ray")
