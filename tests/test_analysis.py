"""Analysis and evaluation at the code level, on tiny trained checkpoints."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from vlae_jax import (analysis, evaluation, factors, inference, intervention,
                      train)


@pytest.fixture
def digits_workdir(trained_run):
  return str(trained_run.workdir)


def write_celeba_folder(root, count=12, size=(178, 218)):
  rng = np.random.default_rng(0)
  (root / "img_align_celeba").mkdir(parents=True)
  names = [f"{i:06d}.jpg" for i in range(1, count + 1)]
  for name in names:
    Image.fromarray(rng.integers(0, 255, size[::-1] + (3,), np.uint8)).save(
        root / "img_align_celeba" / name)
  attr = [str(count), " ".join(f"Attr{j}" for j in range(39)) + " Smiling"]
  attr += [f"{n} " + " ".join("1" if (i + j) % 2 else "-1" for j in range(40))
           for i, n in enumerate(names)]
  (root / "list_attr_celeba.txt").write_text("\n".join(attr))
  (root / "list_eval_partition.txt").write_text(
      "\n".join(f"{n} {0 if i < count - 4 else 2}" for i, n in enumerate(names)))


def decode_spy(seen):
  """``inference.decode_images`` that also appends the codes it decodes to
  ``seen`` (a list of per-rung arrays per call)."""
  real_decode = inference.decode_images

  def spy(model, variables, codes):
    seen.append([np.array(c) for c in codes])
    return real_decode(model, variables, codes)
  return spy


def test_arithmetic_decodes_exactly_c_plus_a_minus_b_in_the_chosen_rungs(
    digits_workdir, monkeypatch):
  rng = np.random.default_rng(0)
  fake = [rng.normal(size=(6, 2)).astype(np.float32) for _ in range(3)]
  seen = []
  monkeypatch.setattr(analysis, "encode_means", lambda *a, **k: fake)
  monkeypatch.setattr(analysis, "decode_images", decode_spy(seen))
  paths = analysis.arithmetic(digits_workdir, [(0, 1, 2), (3, 4, 5)],
                              rungs=[0, 2])
  for l in range(3):
    a, b, c = fake[l][0::3], fake[l][1::3], fake[l][2::3]
    # c is the face edited: the rungs left out keep c's codes.
    expected = c + (a - b) if l in (0, 2) else c
    np.testing.assert_array_equal(seen[-1][l], expected)
  with Image.open(paths[0]) as im:  # 2 rows of a, b, c, result
    assert im.size == (4 * 33 + 1, 2 * 33 + 1)


def test_the_figure_and_the_score_compute_the_same_arithmetic(
    digits_workdir, monkeypatch):
  """``arithmetic`` (the figure) and ``intervention.arithmetic_table``
  (evaluate's score) decode the same codes for the same triple and rungs."""
  rng = np.random.default_rng(1)
  means = [rng.normal(size=(3, 2)).astype(np.float32) for _ in range(3)]
  monkeypatch.setattr(analysis, "encode_means", lambda *a, **k: means)
  decoded = []
  spy = decode_spy(decoded)
  monkeypatch.setattr(analysis, "decode_images", spy)
  monkeypatch.setattr(intervention.inference, "decode_images", spy)
  analysis.arithmetic(digits_workdir, [(0, 1, 2)], rungs=[1])
  figure_codes = decoded[-1]
  model, state = analysis.load_experiment(digits_workdir)[1:]
  images = np.zeros((3, 8, 8, 1), np.float32)
  labels = np.array([[1, 0], [0, 0], [0, 1]])  # a has X, b and c lack it
  monkeypatch.setattr(intervention, "analogy_triples",
                      lambda *a, **k: np.array([[0, 1, 2]]))
  decoded.clear()
  intervention.arithmetic_table(
      model, inference.variables_of(state), images, means, labels,
      ["X", "Y"], ["X"], lambda x: np.zeros((len(x), 2)),
      triples_per_attribute=1)
  # Decoded in order: all rungs, rung 0, rung 1, rung 2, then c unchanged.
  score_codes = decoded[2]
  for figure, score in zip(figure_codes, score_codes):
    np.testing.assert_array_equal(figure, score)


def test_attribute_vector_of_a_synthetic_case():
  present = np.array([1, 1, 0, 0, 0, 1], bool)
  vector = np.array([2.0, -1.0])
  base = np.array([[0.3, 0.1], [-0.3, -0.1], [0.5, 0.2], [-0.5, -0.2],
                   [0.0, 0.0], [0.0, 0.0]])
  codes = [base + present[:, None] * vector, base]
  got = analysis.attribute_vectors(codes, present)
  np.testing.assert_allclose(got[0], vector, atol=1e-12)
  np.testing.assert_allclose(got[1], 0.0, atol=1e-12)
  with pytest.raises(analysis.AnalysisError, match="all or none"):
    analysis.attribute_vectors(codes, np.ones(6, bool))


def test_probe_finds_a_planted_label_and_not_noise():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 800)
  codes = rng.normal(size=(800, 4))
  planted = codes + 3.0 * labels[:, None] * np.array([1, 0, 0, 0])
  score = evaluation.probe_score(planted[:600], labels[:600], planted[600:],
                               labels[600:], balanced=True)
  assert score > 0.9
  chance = evaluation.probe_score(codes[:600], labels[:600], codes[600:],
                                labels[600:], balanced=True)
  assert abs(chance - 0.5) < 0.1


def test_active_units_counts_dimensions_that_vary():
  rng = np.random.default_rng(0)
  means = np.stack([rng.normal(size=1000), 0.05 * rng.normal(size=1000),
                    np.full(1000, 2.0)], axis=1)
  assert evaluation.active_units(means) == 1  # variances 1, 0.0025, 0


def test_interpolation_moves_only_the_chosen_rungs():
  start = [np.zeros((1, 2)), np.ones((1, 2)), np.full((1, 2), 2.0)]
  end = [np.ones((1, 2)), np.zeros((1, 2)), np.full((1, 2), -2.0)]
  codes = analysis.interpolation_codes(start, end, rungs=[1], steps=5)
  np.testing.assert_array_equal(codes[0], np.zeros((5, 2)))
  np.testing.assert_allclose(codes[1][:, 0], [1, 0.75, 0.5, 0.25, 0])
  np.testing.assert_array_equal(codes[2], np.full((5, 2), 2.0))


def test_interpolate_decodes_a_to_b_row_by_row(digits_workdir, monkeypatch):
  from vlae_jax import datasets, experiment
  seen = []
  monkeypatch.setattr(analysis, "decode_images", decode_spy(seen))
  paths = analysis.interpolate(digits_workdir, 3, 7, steps=4, rungs=[0, 2])
  assert paths[0].endswith("interpolate_3_7.png")
  with Image.open(paths[0]) as im:  # rows: rungs 0 and 2, rung 0, rung 2
    assert im.size == (4 * 33 + 1, 3 * 33 + 1)
  config, model, state = experiment.load_experiment(digits_workdir)
  test = datasets.load_split(config, "test")
  means = inference.encode_means(model, inference.variables_of(state),
                                 test.batch(np.array([3, 7]))["image"])
  assert len(seen) == 3
  for row, moving in zip(seen, ([0, 2], [0], [2])):
    for l, codes in enumerate(row):
      assert codes.shape == (4, means[l].shape[1])
      np.testing.assert_allclose(codes[0], means[l][0], atol=1e-6)
      # The last column reaches b in the moving rungs only.
      np.testing.assert_allclose(codes[-1], means[l][1 if l in moving else 0],
                                 atol=1e-6)


def test_sweep_covers_the_radius_grid():
  base = [np.zeros((1, 2)), np.ones((1, 10))]
  codes, rows = analysis.sweep_codes(base, 0, radius=3.0, steps=4)
  assert rows == 4 and codes[0].shape == (16, 2)
  assert codes[0].min() == -3.0 and codes[0].max() == 3.0
  np.testing.assert_array_equal(codes[1], np.ones((16, 10)))
  codes, rows = analysis.sweep_codes(base, 1, radius=2.0, steps=3)
  assert rows == 10 and codes[1].shape == (30, 10)
  np.testing.assert_array_equal(codes[1][3:6, 1], [-2, 0, 2])
  assert np.count_nonzero(codes[1][3:6, [0] + list(range(2, 10))]) == 0


def test_evaluate_writes_metrics_and_heatmap(digits_workdir):
  paths = evaluation.evaluate(digits_workdir, probe_train_size=300,
                            classifier_steps=50, decoder_images=100)
  metrics = json.load(open(paths[0]))
  assert metrics["test_images"] == 297 and len(metrics["mmd"]) == 3
  assert len(metrics["probe"]["digit accuracy"]) == 3
  # "this rung and above" of the top rung is the top rung's own kNN score
  upper = metrics["digit_knn_rungs_and_above"]
  assert len(upper) == 3 and all(0 <= a <= 1 for a in upper)
  assert upper[-1] == metrics["factors"]["digit"]["knn_accuracy"][-1]
  assert "digit (knn, this rung and above)" in open(paths[1]).read()
  assert all(0 <= a <= 2 for a in metrics["active_units"])
  text = open(paths[1]).read()
  assert "active units" in text
  with Image.open(paths[2]) as im:
    assert im.size[0] > 100
  # Encoder side beside its controls: 2-D pixel PCA holds the ink's height,
  # random codes hold nothing; the factor plus noise of its own size sits
  # near R^2 0.5.
  controls = metrics["factor_controls"]
  assert controls["columns"] == ["pixel PCA", "random", "factor + noise"]
  pca, random = controls["table"]["height"]["knn_r2"]
  assert pca > 0.4 and random < 0.05
  assert 0.2 < controls["factor_plus_noise"]["height"] < 0.7
  # Decoder side: shares per rung sum to 1, both interventions, every claim
  # judged on both sides, the statistic's own controls pass.
  for mode in ("resample", "sweep"):
    table = metrics["decoder"][mode]
    assert table["images"] == 100 and table["draws"] == 8
    for name in ("thickness", "inclination", "digit"):
      share = table["factors"][name]["share"]
      assert len(share) == 3 and abs(sum(share) - 1) < 1e-9
      assert all(lo <= s <= hi for s, (lo, hi) in zip(
          share, table["factors"][name]["share_interval"]))
    assert all(p["held"] for p in table["controls"]["positive"])
    assert not table["controls"]["negative"]["held_by_any"]
  assert [c["factor"] for c in metrics["decoder_claims"]] == [
      "thickness", "inclination", "digit"]
  assert all(isinstance(c["held"], bool) for c in metrics["decoder_claims"])
  assert text.count("\nclaim: ") == 3
  assert text.count("\n       encoder side: ") == 3
  assert "decoder side: share of each factor" in text
  assert any(p.endswith("decoder_heatmap.png") for p in paths)


def test_bad_analysis_requests_are_refused(digits_workdir):
  with pytest.raises(analysis.AnalysisError, match=r"rung 3 is out of range"):
    analysis.traverse(digits_workdir, rungs=[3])
  with pytest.raises(analysis.AnalysisError,
                     match=r"dimension 2 is out of range; rung 0 has "
                     r"dimensions 0..1"):
    analysis.traverse(digits_workdir, rungs=[0], dims=[2])
  paths = analysis.traverse(digits_workdir, rungs=[1], dims=[1], steps=3)
  with Image.open([p for p in paths if "dims_rung1" in p][0]) as im:
    assert im.size == (3 * 33 + 1, 1 * 33 + 1)  # one row: dimension 1
  with pytest.raises(analysis.AnalysisError, match=r"outside the test split"):
    analysis.interpolate(digits_workdir, 0, 297)
  with pytest.raises(analysis.AnalysisError,
                     match=r"need radius > 0 and steps >= 2, got radius=0.0, "
                     r"steps=9"):
    analysis.traverse(digits_workdir, radius=0.0)
  with pytest.raises(analysis.AnalysisError, match=r"need steps >= 2, got 1"):
    analysis.interpolate(digits_workdir, 0, 1, steps=1)
  with pytest.raises(analysis.AnalysisError,
                     match=r"need rows, cols >= 1, got 0x8"):
    analysis.sample(digits_workdir, rows=0)
  with pytest.raises(analysis.AnalysisError,
                     match=r"give image indices in triples a,b,c; got \[0, 1\]"):
    analysis.arithmetic(digits_workdir, [(0, 1)])
  with pytest.raises(analysis.AnalysisError, match="has no attributes"):
    analysis.edit_attribute(digits_workdir, "Smiling", [0])


def test_attribute_editing_on_a_tiny_celeba(tmp_path):
  write_celeba_folder(tmp_path / "celeba", count=16)
  # Train: persons 1 and 2, six faces each; test: persons 3 and 4, two each.
  people = [1] * 6 + [2] * 6 + [3, 3, 4, 4]
  (tmp_path / "celeba" / "identity_CelebA.txt").write_text("".join(
      f"{i + 1:06d}.jpg {p}\n" for i, p in enumerate(people)))
  config = tiny_config(tmp_path, dataset="celeba",
                       data_dir=str(tmp_path / "celeba"), image_size=16,
                       batch_size=4, num_train_steps=2, checkpoint_every=2,
                       eval_every=2, image_every=2)
  config.model.rung_kinds = ("conv", "conv", "dense")
  config.model.rung_widths = ((4,), (8,), (16,))
  config.model.combine = "concat"
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  paths = analysis.edit_attribute(workdir, "Smiling", [0, 1, 2], rungs=[0, 2])
  with Image.open(paths[0]) as im:
    # rows: originals, reconstructions, all chosen rungs, rung 0, rung 2
    assert im.size == (3 * 33 + 1, 5 * 33 + 1)
  with pytest.raises(analysis.AnalysisError,
                     match="unknown attribute 'Smile'; choose one of Attr0"):
    analysis.edit_attribute(workdir, "Smile", [0])
  paths = evaluation.evaluate(workdir, probe_train_size=100,
                            classifier_steps=20, arithmetic_triples=10)
  metrics = json.load(open(paths[0]))
  assert len(metrics["probe"]) == 40
  # Smiling (the 40th attribute) alternates over the 4 test faces: scored
  # analogies for it, beside both baselines, and the figure of them.
  methods = metrics["arithmetic"]["attributes"]["Smiling"]["methods"]
  assert set(methods) == {"all rungs", "rung 0", "rung 1", "rung 2",
                          "pixels", "c_decoded"}
  assert all(0 <= m["transfer"] <= 1 and 0 <= m["kept"] <= 1
             for m in methods.values())
  assert "Smiling" in metrics["decoder"]["resample"]["factors"]
  # The identity path: a verifier of the train people, the test pairs on
  # both sides, and the claim judged.
  verifier = metrics["identity_verifier"]
  assert (verifier["train_identities"], verifier["train_faces"],
          verifier["same_pairs"]) == (2, 12, 2)
  assert 0 <= verifier["test_auc_real_faces"] <= 1
  assert metrics["factors"]["identity"]["same_pairs"] == [2, 2, 2]
  assert "identity" in metrics["decoder"]["resample"]["factors"]
  assert any(c["factor"] == "identity" and c["held"] is not None
             for c in metrics["claims"])
  assert any(c["factor"] == "identity" for c in metrics["decoder_claims"])
  assert "identity verifier (trained on 12 train faces of 2 people)" in open(
      paths[1]).read()
  # Each claim factor's response to each claim's cause, on these faces;
  # the relative ones ignore the light's strength.
  response = metrics["factor_specificity"]
  assert set(response["warmth_ratio"]) == set(factors.CELEBA_CAUSES)
  for name in ("warmth_ratio", "face_relative_redness"):
    assert response[name]["lighting"] < 1e-3, name
  assert "each claim factor's response" in open(paths[1]).read()
  with Image.open([p for p in paths if p.endswith("arithmetic.png")][0]) as im:
    assert im.size == (6 * 33 + 1, 2 * 33 + 1)  # a, b, c, c, result, pixels
