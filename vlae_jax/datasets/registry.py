"""Data sources by name: ``--config.dataset`` -> a ``Source``.

Adding a source is one module implementing ``base.Source`` and one line in
``BUILTIN`` (or ``register(MySource())`` from your own code before
``main.main`` runs).
"""

from __future__ import annotations

from typing import List

from vlae_jax.datasets import celeba, digits, folder, mnist, tfds_source
from vlae_jax.datasets.base import DOMAINS, DataError, Source

BUILTIN = (digits.SOURCE, mnist.SOURCE, celeba.SOURCE, folder.SOURCE,
           tfds_source.SOURCE)

_SOURCES: List[Source] = []


def register(source: Source) -> Source:
  """Adds ``source`` (a name not yet taken; its domain one of DOMAINS)."""
  if not source.name or any(s.name == source.name for s in _SOURCES):
    raise ValueError(f"a data source named {source.name!r} is already "
                     "registered (or the name is empty); choose another.")
  if source.domain not in DOMAINS:
    raise ValueError(f"data source {source.name!r} has domain "
                     f"{source.domain!r}; choose one of {list(DOMAINS)}.")
  _SOURCES.append(source)
  return source


def unregister(name: str):
  """Removes the source named ``name`` (a test's own source, after it)."""
  _SOURCES[:] = [s for s in _SOURCES if s.name != name]


def names() -> List[str]:
  """The ``--config.dataset`` values, as messages list them."""
  return [s.display() for s in _SOURCES]


def find(dataset):
  """The source ``dataset`` names, or None."""
  return next((s for s in _SOURCES if s.matches(dataset)), None)


def source_for(dataset) -> Source:
  """The source ``dataset`` names; a one-line ``DataError`` naming the
  choices otherwise."""
  source = find(dataset)
  if source is None:
    raise DataError(f"unknown dataset {dataset!r}; set --config.dataset to "
                    f"one of {names()} (NAME: a TFDS image data set, e.g. "
                    "tfds:cifar10).")
  return source


for _source in BUILTIN:
  register(_source)
