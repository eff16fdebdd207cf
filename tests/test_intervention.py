"""Decoder-side claims and face-arithmetic scores against decoders whose
answer is known in closed form."""

import numpy as np
import pytest

from vlae_jax import factors, intervention


def brightness_decoder(model, variables, codes, batch_size=None):
  """Grey 4x4 RGB images whose brightness is sigmoid(first coordinate of rung
  0's code); rung 1's code changes nothing; rung 2 tints red by its first
  coordinate a tenth as much as rung 0 brightens."""
  z0, z2 = np.asarray(codes[0])[:, :1], np.asarray(codes[2])[:, :1]
  grey = 1.0 / (1.0 + np.exp(-z0))
  images = np.repeat(grey[:, None, None, :], 3, axis=-1) * np.ones((1, 4, 4, 3))
  images[..., 0] += 0.1 * np.tanh(z2)[:, :, None]
  return np.clip(images, 0.0, 1.0)


def brightness(images):
  return {"brightness": factors.luminance(images.mean(axis=(1, 2))),
          "nothing": np.zeros(len(images))}


def test_rung_control_finds_the_rung_that_moves_the_factor(monkeypatch):
  monkeypatch.setattr(intervention.inference, "decode_images",
                      brightness_decoder)
  monkeypatch.setattr(intervention.inference, "prior_codes",
                      lambda model, key, n: [np.random.default_rng(1)
                                             .standard_normal((n, 2))
                                             for _ in range(3)])
  import jax
  rng = np.random.default_rng(0)
  means = [rng.standard_normal((60, 2)).astype(np.float32) for _ in range(3)]
  real = brightness_decoder(None, None, [rng.standard_normal((500, 2))
                                         for _ in range(3)])
  table = intervention.rung_control(None, None, means, real, brightness,
                                    jax.random.PRNGKey(0), draws=6,
                                    bootstrap=300)
  stats = table["factors"]["brightness"]
  assert stats["share"][1] < 1e-12            # rung 1 never reaches the image
  assert stats["share"][0] > 0.9 and stats["share"][2] > 0.0
  assert sum(stats["share"]) == pytest.approx(1.0)
  low, high = stats["share_interval"][0]
  assert low <= stats["share"][0] <= high
  # The real images vary through rung 0 and 2 at once, as the prior
  # samples do: the whole generator's spread is the real one.
  assert 0.8 < stats["all_rungs"] < 1.25
  claims = intervention.judge_claims(table, (
      ("brightness in rung 0", "brightness", "knn_r2", 0),
      ("brightness in rung 2", "brightness", "knn_r2", -1),
      ("absent", "missing", "knn_r2", 0)))
  assert [c["held"] for c in claims] == [True, False, None]
  assert claims[1]["best_rung"] == 0 and claims[1]["margin"] < 0
  controls = table["controls"]
  assert [p["held"] for p in controls["positive"]] == [True, True, True]
  assert not controls["negative"]["held_by_any"]
  # A factor nothing moves has no share to give out.
  assert np.isnan(table["factors"]["nothing"]["share"]).all()
  assert "share_draws" not in intervention.public(table)["factors"][
      "brightness"]


def test_intervention_codes_resample_and_sweep_one_rung_only():
  import jax
  means = [np.arange(6, dtype=np.float32).reshape(3, 2),
           np.ones((3, 4), np.float32)]
  codes, drawn = intervention.intervention_codes(means, 1, 5,
                                                 jax.random.PRNGKey(0))
  np.testing.assert_array_equal(codes[0], np.repeat(means[0], 5, 0))
  assert codes[1].shape == (15, 4) and codes[1] is drawn
  codes, drawn = intervention.intervention_codes(means, 1, 5,
                                                 jax.random.PRNGKey(0),
                                                 mode="sweep", radius=2.0)
  # Per image: a straight line through the posterior mean, +-2 at the ends.
  offsets = codes[1].reshape(3, 5, 4) - 1.0
  np.testing.assert_allclose(np.linalg.norm(offsets[:, 0], axis=1), 2.0,
                             rtol=1e-5)
  np.testing.assert_allclose(offsets[:, 2], 0.0, atol=1e-6)
  np.testing.assert_allclose(offsets[:, 0], -offsets[:, 4], atol=1e-6)
  with pytest.raises(ValueError, match="intervention mode 'swap'"):
    intervention.intervention_codes(means, 0, 2, jax.random.PRNGKey(0),
                                    mode="swap")


def test_spread_is_the_trace_of_the_covariance():
  rng = np.random.default_rng(0)
  values = rng.standard_normal((7, 3))
  assert intervention.spread(values) == pytest.approx(
      np.trace(np.cov(values.T, bias=True)))


def test_judge_needs_the_margin_outside_the_interval():
  rng = np.random.default_rng(0)
  # Two rungs with equal control on average: no claim either way.
  tied = np.abs(rng.standard_normal((2, 400)))
  stats = intervention.summarise(tied, 1.0, bootstrap=500)
  assert not intervention.judge(stats["share"], stats["share_draws"], 0)["held"]
  assert not intervention.judge(stats["share"], stats["share_draws"], 1)["held"]
  clear = np.stack([tied[0] * 3.0, tied[1]])
  stats = intervention.summarise(clear, 1.0, bootstrap=500)
  assert intervention.judge(stats["share"], stats["share_draws"], 0)["held"]


def test_analogy_triples_pair_a_with_its_nearest_lacking_face():
  labels = np.array([[1, 1, 1, 0],    # 0: has attribute 0
                     [0, 1, 1, 0],    # 1: lacks it, otherwise equal to 0
                     [0, 0, 0, 1],    # 2: lacks it, differs everywhere
                     [0, 0, 1, 1]])
  triples = intervention.analogy_triples(labels, 0, 20, seed=3)
  assert triples.shape == (20, 3)
  assert (triples[:, 0] == 0).all() and (triples[:, 1] == 1).all()
  assert set(triples[:, 2]) <= {2, 3}
  assert intervention.analogy_triples(labels[1:], 0, 5).shape == (0, 3)


def test_arithmetic_table_on_an_identity_autoencoder(monkeypatch):
  # Codes are the pixels themselves (one rung per channel): code arithmetic
  # is pixel arithmetic, so "all rungs" must score like the pixel baseline
  # wherever no pixel leaves [0, 1].
  def encode(model, variables, images, batch_size=None):
    return [images[..., k].reshape(len(images), -1) for k in range(3)]

  def decode(model, variables, codes, batch_size=None):
    return np.stack([np.asarray(c).reshape(-1, 2, 2) for c in codes], -1)

  monkeypatch.setattr(intervention.inference, "decode_images", decode)
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, (80, 3))
  # Attribute k shows as +0.3 in channel k on a mid-grey face.
  images = 0.35 + 0.3 * labels[:, None, None, :] * np.ones((80, 2, 2, 3))
  classify = lambda x: (x.mean(axis=(1, 2)) - 0.5) * 10.0  # logits [n, 3]
  table = intervention.arithmetic_table(None, None, images,
                                        encode(None, None, images), labels,
                                        ["A", "B", "C"], ["B", "Z"], classify,
                                        triples_per_attribute=50)
  assert list(table["attributes"]) == ["B"]
  methods = table["attributes"]["B"]["methods"]
  assert methods["all rungs"]["transfer"] == 1.0
  assert methods["pixels"]["transfer"] == 1.0
  assert methods["rung 1"]["transfer"] == 1.0   # channel B is rung 1
  assert methods["rung 0"]["transfer"] == 0.0
  assert methods["c_decoded"]["transfer"] == 0.0
  assert methods["c_decoded"]["kept"] == 1.0
  low, high = methods["all rungs"]["kept_interval"]
  assert low <= methods["all rungs"]["kept"] <= high
