"""The decoder side of the claims: resample or sweep one rung, decode,
and measure each factor on the decoded images (``vlae_jax.intervention``),
with the caveats that bound what the numbers mean."""

from __future__ import annotations

from typing import Dict

import jax
import numpy as np

from vlae_jax import intervention
from vlae_jax.evaluation.context import Run

# Fewer test images than this on the decoder side: a bootstrap interval
# over so few is printed with a caveat.
MIN_IMAGES_FOR_INTERVALS = 20


def decoder_measure(pixel_factors, classify=None, class_name=None,
                    label_names=(), attribute_names=(), embed=None):
  """The factors measured on decoded images for ``vlae_jax.intervention``:
  the pixel factors (``pixel_factors(images) -> {name: [n]}``); with a
  classifier (``classify(images) -> logits``), the class probabilities
  under ``class_name`` (a class-labelled set: "digit", "class") or each
  of ``attribute_names``' probability (an attribute-labelled set whose
  attributes are ``label_names``); with ``embed``, the identity
  embedding."""
  def measure(images):
    out = dict(pixel_factors(images))
    if classify is not None:
      logits = np.asarray(classify(images), np.float64)
      if class_name:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        out[class_name] = e / e.sum(axis=1, keepdims=True)
      else:
        for name in attribute_names:
          if name in label_names:
            k = list(label_names).index(name)
            out[name] = 1.0 / (1.0 + np.exp(-logits[:, k]))
    if embed is not None:
      out["identity"] = embed(images)
    return out
  return measure


def measure(run: Run, classify, embed, images: int, draws: int) -> Dict:
  """``{"decoder_claims", "decoder"}`` on up to ``images`` test images,
  ``draws`` draws each; adds its caveats to ``run.caveats``."""
  test, train_split = run.test, run.train_split
  count = min(images, len(test))
  chosen = np.sort(np.random.default_rng(run.seed + 7).permutation(
      len(test))[:count])
  # An attribute no train image has (or every one has) teaches the
  # classifier nothing: its probability on decoded images means nothing,
  # and its spread over real images is rounding, so it is not measured.
  constant_attributes = []
  if run.has_attributes:
    names = list(train_split.label_names)
    constant_attributes = [
        n for n in run.attribute_names if n in names and np.unique(
            np.asarray(train_split.labels)[:, names.index(n)]).size < 2]
  measure_factors = decoder_measure(
      run.domain.pixel_factors, classify, run.class_name, test.label_names,
      [n for n in run.attribute_names if n not in constant_attributes], embed)
  decoder = {mode: intervention.rung_control(
      run.model, run.variables, [m[chosen] for m in run.test_means],
      run.test_images, measure_factors, jax.random.fold_in(run.key, 11),
      draws=draws, mode=mode, seed=run.seed) for mode in intervention.MODES}
  if constant_attributes:
    run.caveats.append(
        f"{', '.join(constant_attributes)} "
        f"{'is' if len(constant_attributes) == 1 else 'are'} constant over "
        f"the {len(train_split)} train images: not measured on the decoder "
        "side")
  constant = sorted(name for name, stats in
                    decoder["resample"]["factors"].items()
                    if stats.get("constant_over_real_images"))
  if constant:
    run.caveats.append(
        f"{', '.join(constant)} {'is' if len(constant) == 1 else 'are'} "
        f"constant over the {len(run.test_images)} real {run.split} images: "
        "decoder-side values unscaled, no claim judged on them")
  if count < MIN_IMAGES_FOR_INTERVALS:
    run.caveats.append(
        f"the decoder side uses {count} {run.split} images: its 95% intervals "
        f"need at least {MIN_IMAGES_FOR_INTERVALS} to mean much")
  return {"decoder_claims": intervention.judge_claims(decoder["resample"],
                                                      run.domain.claims),
          "decoder": {m: intervention.public(t) for m, t in decoder.items()}}
