"""What each rung controls in the decoded image: the paper's figures as
interventions on the generator, with bootstrap intervals and controls.

The paper's Figs. 2-4 are claims about the generative side ("sweeping rung l
changes factor f"). ``rung_control`` measures them directly: for each of
``n`` test images with posterior means ``mu_1..mu_L``, each rung ``l`` and
``K`` draws ``z_l^(k)``, decode ``x^(l, k) = dec(mu_{-l}, z_l^(k))`` (every
other rung held at the image's posterior mean) and measure each factor ``f``
on the decoded images. Then

- ``control[l, f] = mean_images Var_k f(x^(l, k)) / Var_test f(x_real)``:
  how much of the factor's spread over real test images rung ``l`` alone
  produces (0: the rung does not touch f; 1: as much as changing the face);
- ``share[l, f] = control[l, f] / sum_l' control[l', f]``: the part of f
  that rung ``l`` controls, comparable across rungs and factors.

A vector factor (an identity embedding, the digit classifier's class
probabilities) uses the trace of its covariance for the variance.

Two draws of rung ``l``: ``"resample"`` draws ``z_l ~ N(0, I)``; ``"sweep"``
moves ``z_l`` along one random unit direction per image over
``[-radius, radius]`` from the posterior mean (the traversal figures).

Intervals: the ``n`` test images are resampled with replacement
(``bootstrap`` times) and every statistic recomputed; 95% intervals are the
2.5 and 97.5 percentiles. A claim "f lives in rung r" is HELD when
``share[r, f] - max_{l != r} share[l, f]`` has a 95% interval above 0.

Controls of the statistic itself (``statistic_controls``), computed on the
same decodes: a positive control, a factor that surely lives in one rung (the
first coordinate of that rung's own drawn code), must be HELD with a share
near 1; a negative control, a factor no rung controls (a value drawn
independently for every decoded image), must be held by no rung (shares near
1/L). The factor scales' controls: ``all_rungs`` is ``control`` with every
rung drawn at once (independent prior samples: the spread the whole
generator produces, near 1 for a factor the model generates faithfully).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import jax
import numpy as np

from vlae_jax import inference

# A factor maps decoded images [n, H, W, C] in [0, 1] to values [n] or [n, d].
FactorFn = Callable[[np.ndarray], Dict[str, np.ndarray]]

MODES = ("resample", "sweep")


def spread(values: np.ndarray) -> np.ndarray:
  """Variance over axis -2 of ``values [..., k, d]`` summed over ``d`` (the
  trace of the covariance): ``[...]``."""
  return np.var(values, axis=-2).sum(axis=-1)


def _as_matrix(values) -> np.ndarray:
  values = np.asarray(values, np.float64)
  return values[:, None] if values.ndim == 1 else values


def intervention_codes(means: Sequence[np.ndarray], rung: int, draws: int,
                       key, mode: str = "resample", radius: float = 2.0
                       ) -> Tuple[List[np.ndarray], np.ndarray]:
  """Codes for ``draws`` interventions on ``rung`` of each of ``n`` images.

  ``means``: per rung ``[n, dim_l]``. Returns ``(codes, drawn)``: per rung
  ``[n * draws, dim_l]`` (image-major: rows ``i * draws + k``), every rung but
  ``rung`` repeated from ``means``, and ``drawn [n * draws, dim_rung]``, the
  values put into ``rung``.
  """
  if mode not in MODES:
    raise ValueError(f"intervention mode {mode!r}; choose one of {MODES}.")
  n, dim = means[rung].shape
  if mode == "resample":
    drawn = np.asarray(jax.random.normal(key, (n * draws, dim)), np.float32)
  else:
    direction = np.asarray(jax.random.normal(key, (n, dim)), np.float64)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-12
    t = np.linspace(-radius, radius, draws)
    drawn = (np.repeat(means[rung], draws, 0)
             + (direction[:, None, :] * t[None, :, None]).reshape(n * draws, dim)
             ).astype(np.float32)
  codes = [drawn if l == rung else np.repeat(np.asarray(m, np.float32), draws, 0)
           for l, m in enumerate(means)]
  return codes, drawn


def per_image_spread(values: np.ndarray, n: int, draws: int) -> np.ndarray:
  """``values [n * draws, d]`` (image-major) -> per image spread ``[n]``."""
  return spread(_as_matrix(values).reshape(n, draws, -1))


def bootstrap_indices(n: int, count: int, seed: int = 0) -> np.ndarray:
  """``[count, n]`` row indices drawn with replacement."""
  return np.random.default_rng(seed).integers(0, n, (count, n))


def _interval(samples: np.ndarray) -> List[float]:
  low, high = np.percentile(samples, [2.5, 97.5], axis=0)
  return [float(low), float(high)]


# A factor whose spread over the real images is at most this is constant
# there (e.g. an attribute no test image has): dividing by its spread would
# turn float rounding into values like 1e17, so its values stay unscaled.
CONSTANT_SPREAD = 1e-12


def summarise(per_image: np.ndarray, real_spread: float,
              bootstrap: int = 1000, seed: int = 0) -> Dict:
  """Statistics of one factor from ``per_image [L, n]`` spreads.

  ``real_spread``: the factor's spread over real test images (``spread`` of
  ``[n_test, d]``). Returns ``control`` and ``share`` per rung, their 95%
  bootstrap intervals (``control_interval``, ``share_interval``: per rung
  ``[low, high]``) and the bootstrap draws of ``share`` (``share_draws``
  ``[bootstrap, L]``, for the claims).
  """
  per_image = np.asarray(per_image, np.float64)
  num_rungs, n = per_image.shape
  scale = real_spread if real_spread > CONSTANT_SPREAD else 1.0
  rows = bootstrap_indices(n, bootstrap, seed)
  mean = per_image.mean(axis=1) / scale                    # [L]
  draws = per_image[:, rows].mean(axis=2).T / scale        # [B, L]
  total = mean.sum()
  share = mean / total if total > 0 else np.full(num_rungs, np.nan)
  totals = draws.sum(axis=1, keepdims=True)
  share_draws = np.where(totals > 0, draws / np.maximum(totals, 1e-300),
                         np.nan)
  return {
      "control": [float(v) for v in mean],
      "control_interval": [_interval(draws[:, l]) for l in range(num_rungs)],
      "share": [float(v) for v in share],
      "share_interval": [_interval(share_draws[:, l])
                         for l in range(num_rungs)],
      "share_draws": share_draws,
  }


def judge(share: Sequence[float], share_draws: np.ndarray, rung: int
          ) -> Dict:
  """Whether ``rung`` controls the factor more than every other rung by more
  than the 95% interval: ``margin = share[rung] - max other share``, HELD
  when its bootstrap interval's low end is above 0."""
  share = np.asarray(share, np.float64)
  num_rungs = len(share)
  rung = rung % num_rungs
  others = [l for l in range(num_rungs) if l != rung]
  margin = share[rung] - share[others].max()
  margins = share_draws[:, rung] - share_draws[:, others].max(axis=1)
  interval = _interval(margins)
  best = int(np.nanargmax(share)) if np.isfinite(share).any() else -1
  return {"expected_rung": rung, "best_rung": best, "margin": float(margin),
          "margin_interval": interval,
          "held": bool(np.isfinite(interval[0]) and interval[0] > 0)}


def rung_control(model, variables, means: Sequence[np.ndarray],
                 real_images: np.ndarray, measure: FactorFn, key,
                 draws: int = 8, mode: str = "resample", radius: float = 2.0,
                 bootstrap: int = 1000, seed: int = 0) -> Dict:
  """The rung x factor control table of one trained model.

  ``means``: per rung posterior means ``[n, dim_l]`` of ``n`` test images;
  ``real_images [m, H, W, C]`` in [0, 1] set each factor's scale (its spread
  over real images); ``measure(images) -> {factor: [k] or [k, d]}``.
  Returns ``{"factors": {name: summarise(...) + "all_rungs"}, "controls":
  statistic_controls(...), "draws", "mode", "images"}``; the share draws
  are kept (for ``judge``) under ``"_share_draws"`` per factor.
  """
  num_rungs = len(means)
  n = len(means[0])
  real = {name: spread(_as_matrix(v)[None])[0]
          for name, v in measure(real_images).items()}
  per_image: Dict[str, np.ndarray] = {name: np.zeros((num_rungs, n))
                                      for name in real}
  drawn_codes = []
  for l in range(num_rungs):
    if means[l].shape[1] == 0:
      # A rung without a code (the single-code baseline's lower rungs) has
      # nothing to draw: every decode would be the same image, spread 0.
      drawn_codes.append(np.zeros((n * draws, 0), np.float32))
      continue
    codes, drawn = intervention_codes(means, l, draws,
                                      jax.random.fold_in(key, l), mode, radius)
    drawn_codes.append(drawn)
    values = measure(inference.decode_images(model, variables, codes))
    for name, v in values.items():
      per_image[name][l] = per_image_spread(v, n, draws)
  # Every rung drawn at once: independent prior samples, the spread of the
  # whole generator (the factor scale's positive control).
  prior = inference.prior_codes(model, jax.random.fold_in(key, num_rungs),
                                n * draws)
  whole = measure(inference.decode_images(model, variables, prior))
  out = {"mode": mode, "draws": draws, "images": n, "factors": {}}
  for name in real:
    stats = summarise(per_image[name], real[name], bootstrap, seed)
    constant = bool(real[name] <= CONSTANT_SPREAD)
    stats["constant_over_real_images"] = constant
    stats["all_rungs"] = float(spread(_as_matrix(whole[name])[None])[0]
                               / (1.0 if constant else real[name]))
    out["factors"][name] = stats
  out["controls"] = statistic_controls(drawn_codes, n, draws, bootstrap,
                                       seed)
  return out


def statistic_controls(drawn_codes: Sequence[np.ndarray], n: int, draws: int,
                       bootstrap: int = 1000, seed: int = 0) -> Dict:
  """The share statistic on factors whose answer is known, per rung ``r``:
  ``positive[r]``, the first coordinate of rung r's drawn code (only rung r
  moves it: must be HELD at r); ``negative``, an independent standard normal
  value per decoded image (no rung controls it: must be held nowhere)."""
  num_rungs = len(drawn_codes)
  out = {"positive": [], "negative": None}
  for r in range(num_rungs):
    if drawn_codes[r].shape[1] == 0:  # a rung without a code: no control
      out["positive"].append({"rung": r, "share": 0.0, "held": None})
      continue
    per_image = np.stack([
        per_image_spread(drawn_codes[r][:, 0] if l == r
                         else np.zeros(n * draws), n, draws)
        for l in range(num_rungs)])
    stats = summarise(per_image, 1.0, bootstrap, seed)
    verdict = judge(stats["share"], stats["share_draws"], r)
    out["positive"].append({"rung": r, "share": stats["share"][r],
                            "held": verdict["held"]})
  rng = np.random.default_rng(seed + 1)
  per_image = np.stack([per_image_spread(rng.standard_normal(n * draws), n,
                                         draws) for _ in range(num_rungs)])
  stats = summarise(per_image, 1.0, bootstrap, seed)
  out["negative"] = {
      "share": stats["share"],
      "held_by_any": any(judge(stats["share"], stats["share_draws"], r)["held"]
                         for r in range(num_rungs))}
  return out


def public(table: Dict) -> Dict:
  """``rung_control``'s result without the bootstrap draws (JSON-ready)."""
  out = dict(table)
  out["factors"] = {name: {k: v for k, v in stats.items()
                           if k != "share_draws"}
                    for name, stats in table["factors"].items()}
  return out


def judge_claims(table: Dict, claims) -> List[Dict]:
  """Decoder-side verdicts for ``claims`` ``(text, factor, metric, rung)``
  (the encoder-side claim lists of ``vlae_jax.factors``; the metric is
  ignored: the decoder side has one statistic, the share)."""
  verdicts = []
  for text, factor, _, rung in claims:
    stats = table["factors"].get(factor)
    if stats is None:
      verdicts.append({"claim": text, "factor": factor, "held": None,
                       "why": "not measured"})
      continue
    if stats.get("constant_over_real_images"):
      verdicts.append({"claim": text, "factor": factor, "held": None,
                       "why": "constant over the real test images"})
      continue
    verdict = judge(stats["share"], stats["share_draws"], rung)
    verdict.update({"claim": text, "factor": factor,
                    "share": [round(s, 4) for s in stats["share"]]})
    verdicts.append(verdict)
  return verdicts


# --- Face arithmetic (paper Fig. 4) as a number -----------------------------


def analogy_triples(labels: np.ndarray, attribute: int, count: int,
                    seed: int = 0) -> np.ndarray:
  """``[t, 3]`` row indices ``(a, b, c)``: ``a`` has the attribute; ``b``
  lacks it and, of the rows that lack it, shares the most other attributes
  with ``a`` (ties broken at random); ``c`` lacks it, ``c != b``. Drawn with
  a fixed seed; fewer than ``count`` when the labels allow fewer (0 when no
  row has the attribute or fewer than two lack it)."""
  labels = np.asarray(labels) > 0
  have = np.flatnonzero(labels[:, attribute])
  lack = np.flatnonzero(~labels[:, attribute])
  if len(have) == 0 or len(lack) < 2:
    return np.zeros((0, 3), np.int64)
  rng = np.random.default_rng(seed)
  others = np.delete(labels, attribute, axis=1)
  triples = []
  for a in rng.choice(have, count, replace=len(have) < count):
    agreement = (others[lack] == others[a]).sum(axis=1)
    agreement = agreement + rng.random(len(lack)) * 0.5  # random tie-break
    b = lack[int(np.argmax(agreement))]
    c = b
    while c == b:
      c = int(rng.choice(lack))
    triples.append((a, b, c))
  return np.asarray(triples, np.int64)


def analogy_scores(predicted: np.ndarray, reference: np.ndarray,
                   attribute: int) -> Dict[str, float]:
  """How an analogy result reads: ``transfer``, the rate at which the
  classifier finds the attribute in the results (``predicted [t, k]`` in
  {0, 1}); ``kept``, the mean agreement with ``reference [t, k]`` (the
  classifier on the real ``c``) over the other attributes."""
  predicted = np.asarray(predicted) > 0
  reference = np.asarray(reference) > 0
  others = [k for k in range(predicted.shape[1]) if k != attribute]
  return {"transfer": float(predicted[:, attribute].mean()),
          "kept": float((predicted[:, others] == reference[:, others]).mean())}


def arithmetic_table(model, variables, images: np.ndarray,
                     means: Sequence[np.ndarray], labels: np.ndarray,
                     label_names: Sequence[str], attributes: Sequence[str],
                     classify: Callable[[np.ndarray], np.ndarray],
                     triples_per_attribute: int = 200, seed: int = 0,
                     bootstrap: int = 200) -> Dict:
  """Attribute analogies ``a - b + c`` scored by an attribute classifier.

  ``images [n, H, W, C]`` in [0, 1] with their posterior means ``means``
  (per rung ``[n, d_l]``, computed once by the caller) and ``labels [n, k]``
  (the test split);
  ``classify(images) -> [m, k]`` logits of the k attributes. For each
  attribute, ``analogy_triples``; the result keeps ``c``'s codes and adds
  ``z_a - z_b`` in the chosen rungs (all rungs: the paper's
  ``z_a - z_b + z_c``; and each rung alone). Baselines: ``pixels``, the
  same arithmetic on pixels (clipped to [0, 1]); ``c_decoded``, ``c``'s
  reconstruction unchanged (the transfer rate it shows is the classifier's
  false-positive rate). Returns per attribute per method ``transfer`` and
  ``kept`` with 95% bootstrap intervals over triples.
  """
  real_logits = classify(images)
  num_rungs = len(means)
  out = {"triples_per_attribute": triples_per_attribute, "attributes": {}}
  for name in attributes:
    if name not in label_names:
      continue
    k = list(label_names).index(name)
    triples = analogy_triples(labels, k, triples_per_attribute, seed)
    if not len(triples):
      continue
    a, b, c = triples.T
    methods = {"all rungs": list(range(num_rungs))}
    methods.update({f"rung {l}": [l] for l in range(num_rungs)})
    results = {}
    for method, rungs in methods.items():
      codes = inference.arithmetic_codes([m[a] for m in means],
                                         [m[b] for m in means],
                                         [m[c] for m in means], rungs)
      results[method] = classify(inference.decode_images(model, variables,
                                                         codes))
    results["pixels"] = classify(np.clip(images[a] - images[b] + images[c],
                                         0.0, 1.0))
    results["c_decoded"] = classify(inference.decode_images(
        model, variables, [m[c] for m in means]))
    reference = real_logits[c]
    rows = bootstrap_indices(len(triples), bootstrap, seed)
    by_method = {}
    for method, logits in results.items():
      scores = analogy_scores(logits, reference, k)
      draws = [analogy_scores(logits[r], reference[r], k) for r in rows]
      scores["transfer_interval"] = _interval(
          np.asarray([d["transfer"] for d in draws]))
      scores["kept_interval"] = _interval(
          np.asarray([d["kept"] for d in draws]))
      by_method[method] = scores
    out["attributes"][name] = {"triples": len(triples),
                               "first_triples": triples[:6].tolist(),
                               "methods": by_method}
  return out
