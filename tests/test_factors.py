"""Measured image factors and rung scores against closed forms and sklearn."""

import os

import numpy as np
import pytest

from vlae_jax import datasets, factors


def bar(width, length, size=28):
  """A vertical ink bar of ``width`` x ``length`` pixels, [1, size, size, 1]."""
  image = np.zeros((1, size, size, 1), np.float32)
  top, left = (size - length) // 2, (size - width) // 2
  image[0, top:top + length, left:left + width] = 1.0
  return image


@pytest.mark.parametrize("width,length", [(1, 16), (2, 16), (4, 20), (3, 9)])
def test_thickness_width_height_of_a_rectangle_are_closed_forms(width, length):
  f = factors.mnist_factors(bar(width, length))
  # Area w L over half the perimeter (w + L): the stroke width when L >> w.
  assert f["thickness"][0] == pytest.approx(width * length / (width + length))
  assert f["ink"][0] == width * length
  # A uniform discrete rectangle: std of n consecutive integers.
  assert f["width"][0] == pytest.approx(np.sqrt((width ** 2 - 1) / 12))
  assert f["height"][0] == pytest.approx(np.sqrt((length ** 2 - 1) / 12))
  assert f["inclination"][0] == pytest.approx(0.0)


def test_thicker_strokes_measure_thicker_on_the_same_digit_shape():
  values = [factors.mnist_factors(bar(w, 20))["thickness"][0]
            for w in (1, 2, 3, 4, 5)]
  assert np.all(np.diff(values) > 0)


@pytest.mark.parametrize("slant", [-0.6, -0.25, 0.3, 0.5])
def test_inclination_of_a_sheared_line_is_its_shear(slant):
  image = np.zeros((1, 28, 28, 1), np.float32)
  for r in range(4, 25):
    image[0, r, int(round(14 + slant * (14 - r)))] = 1.0  # top leans right
  assert factors.mnist_factors(image)["inclination"][0] == pytest.approx(
      slant, abs=0.03)


def test_a_blank_image_measures_zero_and_uint8_equals_float():
  f = factors.mnist_factors(np.zeros((2, 28, 28, 1), np.uint8))
  for name, values in f.items():
    np.testing.assert_array_equal(values, 0.0, err_msg=name)
  image = bar(3, 12)
  as_uint8 = (image * 255).astype(np.uint8)
  for name, values in factors.mnist_factors(as_uint8).items():
    np.testing.assert_allclose(values, factors.mnist_factors(image)[name],
                               err_msg=name)


def test_celeba_factors_of_coloured_and_lit_images():
  image = np.ones((1, 64, 64, 3), np.float32) * np.array([0.8, 0.5, 0.2],
                                                         np.float32)
  f = factors.celeba_factors(image)
  assert f["brightness"][0] == pytest.approx(0.299 * 0.8 + 0.587 * 0.5
                                             + 0.114 * 0.2)
  assert f["warmth"][0] == pytest.approx(0.6)
  assert f["tint"][0] == pytest.approx(0.0, abs=1e-7)
  assert f["light_direction"][0] == pytest.approx(0.0)
  assert f["face_redness"][0] == pytest.approx(0.8 / 1.5)
  assert f["hair_warmth"][0] == pytest.approx(0.6)
  assert f["warmth_ratio"][0] == pytest.approx(np.log(0.8 / 0.2))
  lit = np.full((1, 64, 64, 3), 0.2, np.float32)
  lit[:, :, :32] = 0.9  # light from the image's left
  assert factors.celeba_factors(lit)["light_direction"][0] == pytest.approx(0.7)
  hair = np.full((1, 64, 64, 3), 0.5, np.float32)
  hair[:, :10] = 0.0  # dark hair: the top 15% of rows (the hair box)
  f = factors.celeba_factors(hair)
  assert f["hair_luminance"][0] == pytest.approx(0.0, abs=1e-6)
  assert f["face_luminance"][0] == pytest.approx(0.5)


def test_relative_hair_and_face_colour_ignore_the_light():
  rng = np.random.default_rng(0)
  faces = rng.uniform(0.1, 0.6, (4, 32, 32, 3)).astype(np.float32)
  f = factors.celeba_factors(faces)
  # A brighter, warmer light: one gain per channel on the whole image.
  lit = factors.celeba_factors(faces * np.float32([1.5, 1.2, 0.7]))
  np.testing.assert_allclose(lit["face_relative_redness"],
                             f["face_relative_redness"], atol=1e-5)
  assert np.all(lit["face_redness"] > f["face_redness"] + 0.03)
  grey = factors.celeba_factors(faces * np.float32(1.5))  # brighter only
  for name in ("hair_relative_luminance", "warmth_ratio"):
    np.testing.assert_allclose(grey[name], f[name], atol=1e-5, err_msg=name)
  assert np.all(grey["hair_luminance"] > f["hair_luminance"] * 1.4)
  assert np.all(grey["warmth"] - f["warmth"]
                == pytest.approx(0.5 * f["warmth"], abs=1e-6))
  assert np.all(lit["warmth_ratio"] - f["warmth_ratio"]
                == pytest.approx(np.log(1.5 / 0.7), abs=1e-5))
  # The hair itself darker (its box, rows [0, 0.15)): log(0.5) lower
  # against an image whose mean Y barely moves.
  dark = faces.copy()
  dark[:, :5] *= 0.5
  d = factors.celeba_factors(dark)["hair_relative_luminance"]
  assert np.all(d < f["hair_relative_luminance"] - 0.5)
  # Redder skin (the face box) against the same image.
  red = faces.copy()
  red[:, 11:27, 10:22, 0] *= 1.5
  r = factors.celeba_factors(red)["face_relative_redness"]
  assert np.all(r > f["face_relative_redness"] + 0.2)
  black = factors.celeba_factors(np.zeros((1, 32, 32, 3), np.float32))
  assert black["face_relative_redness"][0] == 0.0
  assert black["hair_relative_luminance"][0] == 0.0


@pytest.fixture(scope="module")
def real_test_faces():
  from conftest import CELEBA_DIR
  if not os.path.isdir(CELEBA_DIR):
    pytest.skip("../shared/data/celeba not present")
  return datasets.read_celeba_folder(CELEBA_DIR, "test", 32, workers=1).images


def test_each_celeba_claim_measures_its_own_cause_on_real_faces(
    real_test_faces):
  assert len(real_test_faces) == 660
  response = factors.specificity(real_test_faces)
  claimed = {factor for _, factor, _, _ in factors.CELEBA_CLAIMS}
  assert set(factors.CELEBA_CLAIM_CAUSES) == claimed - {"identity", "Smiling"}
  for factor, own in factors.CELEBA_CLAIM_CAUSES.items():
    others = [v for cause, v in response[factor].items() if cause != own]
    assert response[factor][own] > 0.4, factor
    assert response[factor][own] >= factors.SPECIFICITY_RATIO * max(others), (
        factor, response[factor])
  # The claims' first factors fail: each answers another claim's cause.
  assert response["warmth"]["lighting"] > response["warmth"]["white balance"] / 4
  assert (response["hair_luminance"]["lighting"]
          > response["hair_luminance"]["hair colour"] / 4)
  assert (response["face_redness"]["white balance"]
          > response["face_redness"]["face colour"] / 4)
  # Closed-form invariances, on real faces as on random ones.
  for factor in ("warmth_ratio", "hair_relative_luminance",
                 "face_relative_redness", "face_redness"):
    assert response[factor]["lighting"] < 1e-4, factor


def test_r_squared_and_roc_auc_match_sklearn():
  from sklearn.metrics import r2_score, roc_auc_score
  rng = np.random.default_rng(0)
  truth, pred = rng.normal(size=200), rng.normal(size=200)
  assert factors.r_squared(truth, pred) == pytest.approx(r2_score(truth, pred))
  scores = rng.integers(0, 5, 300).astype(float)  # many ties
  labels = rng.random(300) < 0.3
  assert factors.roc_auc(scores, labels) == pytest.approx(
      roc_auc_score(labels, scores))
  assert np.isnan(factors.roc_auc(scores, np.zeros(300, bool)))


def test_scores_find_the_code_that_holds_a_factor():
  rng = np.random.default_rng(0)
  value = rng.normal(size=1200)
  holds = np.stack([value, rng.normal(size=1200)], 1)
  noise = rng.normal(size=(1200, 2))
  good = factors.regression_scores(holds[:1000], value[:1000], holds[1000:],
                                   value[1000:])
  bad = factors.regression_scores(noise[:1000], value[:1000], noise[1000:],
                                  value[1000:])
  assert good["linear"] > 0.999 and good["knn"] > 0.95
  assert bad["linear"] < 0.05 and bad["knn"] < 0.05
  labels = (value > 0).astype(int) + (value > 1).astype(int)
  cls = factors.classification_scores(holds[:1000], labels[:1000],
                                      holds[1000:], labels[1000:])
  assert cls["knn"] > 0.95 and cls["linear"] > 0.95


def test_verification_pairs_and_auc():
  ids = np.array([7, 7, 7, 3, 3, 9])
  a, b, same = factors.verification_pairs(ids, negatives_per_positive=5)
  assert same.sum() == 4  # 3 pairs of identity 7, 1 of identity 3
  np.testing.assert_array_equal(ids[a[same]], ids[b[same]])
  assert np.all(ids[a[~same]] != ids[b[~same]]) and (~same).sum() == 20
  rng = np.random.default_rng(0)
  people = np.repeat(np.arange(50), 4)
  centres = rng.normal(size=(50, 3)) * 5
  codes = centres[people] + rng.normal(size=(200, 3)) * 0.1
  assert factors.verification_auc(codes, people)["auc"] > 0.99
  random = rng.normal(size=(200, 3))
  assert abs(factors.verification_auc(random, people)["auc"] - 0.5) < 0.1


def test_claims_are_judged_by_the_best_rung():
  table = {"thickness": {"knn_r2": [0.4, 0.1, 0.0]},
           "inclination": {"knn_r2": [0.1, 0.05, 0.5]},
           "digit": {"knn_accuracy": [0.2, 0.3, float("nan")]}}
  verdicts = {v["factor"]: v for v in factors.judge_claims(
      table, factors.MNIST_CLAIMS, 3)}
  assert verdicts["thickness"]["held"] is True
  assert verdicts["inclination"]["held"] is False
  assert verdicts["inclination"]["best_rung"] == 2
  assert verdicts["digit"]["held"] is False  # NaN never wins
  assert verdicts["digit"]["best_rung"] == 1
  missing = factors.judge_claims({}, factors.MNIST_CLAIMS[:1], 3)[0]
  assert missing["held"] is None


def test_identity_verifier_tells_apart_people_it_never_saw():
  """Each person a coarse colour pattern, each photo that pattern under
  its own light and noise; the verifier learns train people only."""
  from vlae_jax import evaluation
  rng = np.random.default_rng(0)

  def photos(people, per_person):
    patterns = rng.uniform(0, 1, (len(people), 4, 4, 3))
    faces = np.repeat(np.repeat(np.repeat(patterns, per_person, 0), 4, 1),
                      4, 2)
    light = rng.uniform(0.5, 1.0, (len(faces), 1, 1, 1))
    faces = faces * light + rng.normal(0, 0.08, faces.shape)
    return (np.clip(faces, 0, 1) * 255).astype(np.uint8), np.repeat(
        people, per_person)

  train_faces, train_ids = photos(np.arange(12), 8)
  # Two people below VERIFIER_MIN_FACES faces: left out of the training.
  few_faces, few_ids = photos(np.array([50, 51]),
                              evaluation.VERIFIER_MIN_FACES - 1)
  embed, people, faces = evaluation.identity_verifier(
      np.concatenate([train_faces, few_faces]),
      np.concatenate([train_ids, few_ids]), steps=300)
  assert (people, faces) == (12, 96)
  test_faces, test_ids = photos(np.arange(100, 108), 5)
  features = embed(test_faces)
  assert features.shape[0] == 40
  np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1, atol=1e-4)
  seen = factors.verification_auc(features, test_ids)
  assert seen["same_pairs"] == 8 * 10  # C(5, 2) per person
  assert seen["auc"] > 0.95, seen
  # What the training adds: the same network untrained scores lower (its
  # random features follow the light as much as the person).
  untrained, _, _ = evaluation.identity_verifier(train_faces, train_ids, steps=0)
  assert factors.verification_auc(untrained(test_faces), test_ids)["auc"] < (
      seen["auc"] - 0.08)
  # Negative control: the same faces with the people shuffled.
  shuffled = factors.verification_auc(features, rng.permutation(test_ids))
  assert abs(shuffled["auc"] - 0.5) < 0.15, shuffled
