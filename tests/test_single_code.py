"""The single-code baseline (configs/*_vae.py): the ladder's networks with
one code at the top and none below (``model.latent_dims`` 0 below the top)."""

import json

import numpy as np

from conftest import TRAINED_ARGS, run_main, tiny_config
from test_train import fixed_batch, setup
from vlae_jax import inference


def single_code_config(tmp_path=None):
  return tiny_config(tmp_path, **{"model.latent_dims": (0, 0, 6),
                                  "rung_start_steps": ()})


def test_rungs_without_a_code_have_no_heads_and_pass_the_upper_rung_on():
  config = single_code_config()
  model, state, step = setup(config)
  params = state.params
  for l in (0, 1):  # no posterior heads, no projection of a code
    assert "mean" not in params[f"inference_rungs_{l}"]
    assert "z_proj" not in params[f"generative_rungs_{l}"]
  assert params["inference_rungs_2"]["mean"]["kernel"].shape[-1] == 6
  variables = inference.variables_of(state)
  images = fixed_batch(config)["image"]
  means = inference.encode_means(model, variables, images)
  assert [m.shape[1] for m in means] == [0, 0, 6]
  # It trains: the loss falls, the code-less rungs' terms are exactly 0.
  losses = []
  for _ in range(5):
    state, metrics = step(state, fixed_batch(config))
    losses.append(float(metrics["loss"]))
    assert list(np.asarray(metrics["mmd"])[:2]) == [0.0, 0.0]
    assert np.all(np.isfinite(np.asarray(metrics["posterior_std"])))
  assert losses[-1] < losses[0]


def test_the_celeba_and_mnist_baselines_are_the_ladders_with_one_code():
  from configs import celeba_small_vae, mnist_vae
  from configs.published import celeba_small_8086, mnist_hierarchy_6939
  for ladder, single in ((celeba_small_8086, celeba_small_vae),
                         (mnist_hierarchy_6939, mnist_vae)):
    a, b = ladder.get_config(), single.get_config()
    assert sum(a.model.latent_dims) == b.model.latent_dims[-1]
    assert set(b.model.latent_dims[:-1]) == {0}
    # Everything else is the ladder's: networks, loss, budget, data, seed.
    for config in (a, b):
      config.model.latent_dims = ()
      config.rung_start_steps = ()
      config.name = ""
    assert a.to_dict() == b.to_dict()


def test_a_single_code_run_trains_traverses_and_evaluates(tmp_path):
  workdir = tmp_path / "w"
  result = run_main(f"--workdir={workdir}", *TRAINED_ARGS,
                    "--config.model.latent_dims=(0, 0, 6)",
                    "--config.rung_start_steps=()",
                    f"--config.cache_dir={tmp_path / 'cache'}")
  assert result.returncode == 0, result.stderr[-2000:]
  result = run_main("--mode=traverse", f"--workdir={workdir}", "--steps=3")
  assert result.returncode == 0, result.stderr[-2000:]
  figures = sorted(p.name for p in (workdir / "figures").glob("*.png"))
  assert "traverse_rung2.png" in figures
  assert "traverse_rung0.png" not in figures  # no code to sweep
  result = run_main("--mode=traverse", f"--workdir={workdir}", "--rungs=0")
  assert result.returncode == 2 and "rung 0 has no code" in result.stderr
  result = run_main("--mode=evaluate", f"--workdir={workdir}",
                    "--probe_train_size=200", "--classifier_steps=20",
                    "--decoder_images=20", "--decoder_draws=2")
  assert result.returncode == 0, result.stderr[-2000:]
  metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert metrics["latent_dims"] == [0, 0, 6]
  assert metrics["active_units"][:2] == [0, 0]
  assert metrics["mmd"][:2] == [0.0, 0.0]
  # Nothing to predict from no code; the resampled code-less rungs change
  # nothing, so the top rung holds every factor's change.
  assert metrics["probe"]["digit accuracy"][:2] == [None, None]
  for stats in metrics["decoder"]["resample"]["factors"].values():
    assert stats["share"][:2] == [0.0, 0.0]


def test_the_top_rung_needs_a_code(tmp_path):
  result = run_main(f"--workdir={tmp_path / 'w'}",
                    "--config.model.latent_dims=(2, 2, 0)")
  assert result.returncode == 2
  assert "latent_dims[2]" in result.stderr.strip().splitlines()[-1]
  assert not (tmp_path / "w").exists()
