"""Ctrl-C and SIGTERM: one policy for start-up, analysis, decoding and the
training loop, and the message and exit status each ends with.

A process goes through three phases, each with its own rule:

1. **Start-up** (``record()``, from ``main.py``'s first lines until JAX has
   started): a signal only sets a flag. A KeyboardInterrupt raised inside
   JAX's C++ start-up aborts the process, some library imports swallow it,
   and SIGTERM's default would leave child processes (JPEG decode workers)
   behind. Start-up polls ``raise_if_interrupted()`` at its safe points.
2. **Work outside the training loop** (``raise_at_once()``: analysis modes,
   data loading, compiling): a signal raises KeyboardInterrupt at once
   (recorded, so the exit message names it). Long loops that run in other
   processes (the parallel decode) poll ``raise_if_interrupted()`` between
   chunks and stop their workers.
3. **The training loop** (``with recording():``): recorded; the loop asks
   ``stop_requested()`` between steps, saves the step it reached and
   stops with ``exit 0`` (resume with the same command).

An interrupt that ends a process outside the loop is one line and exit
130 (SIGINT) or 143 (SIGTERM): ``exit_status()``. Imports nothing from
vlae_jax and no JAX, so ``main.py`` calls it first.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Optional, Tuple

_RECORDED = []  # signal numbers, oldest first


def _record(signum, frame):
  del frame
  _RECORDED.append(signum)


def _record_and_raise(signum, frame):
  del frame
  _RECORDED.append(signum)
  raise KeyboardInterrupt


def record():
  """Phase 1: SIGINT and SIGTERM set a flag instead of raising or killing
  the process, until ``raise_at_once``."""
  signal.signal(signal.SIGINT, _record)
  signal.signal(signal.SIGTERM, _record)


def raise_at_once():
  """Phase 2: SIGINT and SIGTERM raise KeyboardInterrupt at once."""
  signal.signal(signal.SIGINT, _record_and_raise)
  signal.signal(signal.SIGTERM, _record_and_raise)


@contextlib.contextmanager
def recording():
  """Phase 3: within the block SIGINT and SIGTERM are recorded, whatever
  was installed before, which is restored after. Outside the main thread
  (where handlers cannot be installed) signals are left alone."""
  previous = {}
  try:
    for sig in (signal.SIGINT, signal.SIGTERM):
      previous[sig] = signal.signal(sig, _record)
  except ValueError:  # not the main thread
    pass
  try:
    yield
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


def signal_name() -> str:
  """The name of the newest recorded signal ("SIGINT" when none)."""
  return signal.Signals(_RECORDED[-1]).name if _RECORDED else "SIGINT"


def stop_requested() -> Optional[str]:
  """The training loop's question between steps: the recorded signal's
  name (save this step and stop), or None (go on)."""
  return signal_name() if _RECORDED else None


def raise_if_interrupted():
  """A safe point: KeyboardInterrupt if a signal was recorded."""
  if _RECORDED:
    raise KeyboardInterrupt


def exit_status() -> Tuple[str, int]:
  """``(message, exit code)`` of a process an interrupt ended outside the
  training loop, where nothing was saved."""
  name = signal_name()
  what = "interrupted (Ctrl-C)" if name == "SIGINT" else f"stopped by {name}"
  return (f"{what} before training started or outside the training loop; "
          "nothing was saved. Run the same command again.",
          143 if name == "SIGTERM" else 130)
