"""What each domain of data is measured by: its pixel factors, the paper's
claims about it, the attributes shown beside the factors, the attributes
face arithmetic scores, and the causes its claim factors answer to. A data
source names its domain (``datasets.Source.domain``); this is the one place
that says what the domain means."""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Tuple

from vlae_jax import datasets, factors


@dataclasses.dataclass(frozen=True)
class Domain:
  """How ``evaluate`` measures one domain.

  Attributes:
    name: "digits", "faces" or "images".
    pixel_factors: ``images [n, H, W, C] in [0, 1] -> {factor: [n]}``.
    claims: the paper's claims ``(text, factor, metric, rung)`` judged on
      both sides (``factors.judge_claims``, ``intervention.judge_claims``).
    class_name: what a class label is called in the tables.
    attribute_factors: the attributes shown beside the pixel factors (and
      measured on the decoder side); None: every attribute the data has.
    arithmetic_attributes: the attributes face arithmetic scores; None:
      the first ``ARITHMETIC_LIMIT`` of ``attribute_factors``.
    claim_causes: per claim factor, the edit of the image that should move
      it (``factors.specificity``); empty: not measured.
    identities: the data has same-person labels (a verifier is trained).
  """

  name: str
  pixel_factors: Callable
  claims: Tuple = ()
  class_name: str = "class"
  attribute_factors: Optional[Tuple[str, ...]] = None
  arithmetic_attributes: Optional[Tuple[str, ...]] = None
  claim_causes: Dict[str, str] = dataclasses.field(default_factory=dict)
  identities: bool = False

  def attributes(self, label_names) -> Tuple[str, ...]:
    """The attributes of the factor table, the decoder side and arithmetic."""
    if self.attribute_factors is None:
      return tuple(label_names)
    return self.attribute_factors

  def arithmetic(self, label_names) -> Tuple[str, ...]:
    if self.arithmetic_attributes is not None:
      return self.arithmetic_attributes
    return self.attributes(label_names)[:ARITHMETIC_LIMIT]


ARITHMETIC_LIMIT = 7

DOMAINS = {
    "digits": Domain("digits", factors.mnist_factors, factors.MNIST_CLAIMS,
                     class_name="digit"),
    "faces": Domain(
        "faces", factors.celeba_factors, factors.CELEBA_CLAIMS,
        # Hair colour, face colour and expression beside the pixel factors;
        # every attribute's probe is in metrics["probe"].
        attribute_factors=("Smiling", "Mouth_Slightly_Open", "Black_Hair",
                           "Blond_Hair", "Gray_Hair", "Pale_Skin", "Male"),
        # Scored by face arithmetic (paper Fig. 4).
        arithmetic_attributes=("Male", "Pale_Skin", "Smiling", "Blond_Hair",
                               "Eyeglasses", "Black_Hair",
                               "Mouth_Slightly_Open"),
        claim_causes=dict(factors.CELEBA_CLAIM_CAUSES), identities=True),
    "images": Domain("images", factors.image_factors),
}


def of(dataset: str) -> Domain:
  """The domain of a ``--config.dataset`` value (its source's)."""
  return DOMAINS[datasets.domain(dataset)]
