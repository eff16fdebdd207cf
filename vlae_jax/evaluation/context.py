"""What every part of an evaluation reads: the trained run, the split
measured, posterior means of it and of a sample of train images, and the
domain's measures; computed once."""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

import jax
import numpy as np

from vlae_jax import datasets, experiment, inference
from vlae_jax.evaluation import domains

# The held-out splits evaluate reads: "test" for reported results,
# "validation" for choosing recipes, budgets and factor definitions.
SPLITS = ("test", "validation")


@dataclasses.dataclass
class Run:
  """One evaluation's inputs. Below, "test" is whichever split is measured.

  ``test_images`` float32 ``[n, H, W, C]`` in [0, 1]; ``test_means`` and
  ``train_means`` per rung ``[n, d_l]`` posterior means; ``train_rows``
  the sampled train rows (``probe_train_size``) with ``train_images`` and
  ``train_labels``; ``skipped`` and ``caveats`` collect the report's lines.
  """

  workdir: str
  split: str
  seed: int
  config: object
  model: object
  state: object
  variables: dict
  domain: domains.Domain
  test: datasets.Split
  train_split: datasets.Split
  test_images: np.ndarray
  test_means: List[np.ndarray]
  train_rows: np.ndarray
  train_images: np.ndarray
  train_means: List[np.ndarray]
  train_labels: np.ndarray
  key: jax.Array
  skipped: List[str] = dataclasses.field(default_factory=list)
  caveats: List[str] = dataclasses.field(default_factory=list)

  @property
  def has_classes(self) -> bool:
    return self.test.label_key == "label"

  @property
  def has_attributes(self) -> bool:
    return self.test.label_key == "attributes"

  @property
  def class_name(self):
    """"digit" / "class" for a class-labelled set, else None."""
    return self.domain.class_name if self.has_classes else None

  @property
  def attribute_names(self) -> Tuple[str, ...]:
    return (self.domain.attributes(self.test.label_names)
            if self.has_attributes else ())


def load(workdir: str, split: str, probe_train_size: int, seed: int,
         checkpoint_step: Optional[int] = None) -> Run:
  """The run in ``workdir`` (its newest checkpoint, or the one at
  ``checkpoint_step``) and the split it is measured on."""
  if split not in SPLITS:
    raise ValueError(f"split {split!r}: use one of {SPLITS}.")
  config, model, state = experiment.load_experiment(workdir, checkpoint_step)
  variables = inference.variables_of(state)
  test = datasets.load_split(config, split)
  train_split = datasets.load_split(config, "train")
  test_images = np.asarray(test.images, np.float32) / 255.0
  rows = np.sort(np.random.default_rng(seed).permutation(len(train_split))[
      :probe_train_size])
  train_images = train_split.batch(rows)["image"]
  run = Run(
      workdir=workdir, split=split, seed=seed, config=config, model=model,
      state=state, variables=variables,
      domain=domains.of(config.dataset), test=test, train_split=train_split,
      test_images=test_images,
      test_means=inference.encode_means(model, variables, test_images),
      train_rows=rows, train_images=train_images,
      train_means=inference.encode_means(model, variables, train_images),
      train_labels=train_split.labels[rows], key=jax.random.PRNGKey(seed))
  if not (run.has_classes or run.has_attributes):
    run.skipped.append("probes, KID and the classifier's factors: the data "
                       "set has no labels (a labels CSV adds them, "
                       "configs/folder.py)")
  if not run.domain.claims:
    run.skipped.append(f"the paper's claims: they are about MNIST and "
                       f"CelebA, not {config.dataset}")
  return run
