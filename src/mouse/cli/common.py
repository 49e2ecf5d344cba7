"""What every console script shares: one typed conversion of the composed config, one error rule.

Each CLI is: Hydra composes ``conf/<name>.yaml`` (typed by its schema in the ConfigStore) →
:func:`to_config` converts it once into the schema dataclass → one library call → print where things
went. :func:`user_errors` turns bad input (a missing file, a bad value, a missing key) into one line
``<prog>: error: <message>`` on stderr and exit code 2; ``HYDRA_FULL_ERROR=1`` shows the traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

T = TypeVar("T")

# Exceptions that mean "the input is wrong" (never a bug in MOUSE): printed as one line.
USER_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, ValueError, KeyError)


def to_config(cfg: DictConfig, schema: type[T]) -> T:
    """The composed ``cfg`` as an instance of its structured ``schema`` (``OmegaConf.to_object``).

    A mandatory value left unset (``???``) raises ValueError naming the key.
    """
    if OmegaConf.get_type(cfg) is not schema:
        raise TypeError(f"the composed config is typed {OmegaConf.get_type(cfg)}, not {schema.__name__}")
    try:
        obj = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", None) or str(err)
        raise ValueError(f"{key} is required: pass {key}=<value> on the command line") from None
    assert isinstance(obj, schema)
    return obj


def hydra_output_dir() -> Path:
    """This job's run directory (``hydra.run.dir``, or the job folder of a multirun)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def sweep_group() -> str | None:
    """The sweep folder of a multirun as one name (``multirun/2026-01-31/12-00-00`` →
    ``2026-01-31-12-00-00``), the W&B group of its jobs; None in a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return "-".join(Path(hydra_cfg.sweep.dir).parts[-2:])


@contextlib.contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Print a :data:`USER_ERRORS` exception as ``<prog>: error: ...`` and exit 2 (traceback with
    ``HYDRA_FULL_ERROR=1``)."""
    try:
        yield
    except USER_ERRORS as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"{prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
