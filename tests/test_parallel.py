"""One step data-parallel over 2 (CPU) devices equals one step on 1 device."""

import os
import subprocess
import sys
import textwrap

from conftest import ROOT, SUITE_XLA_FLAGS

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    assert jax.device_count() == 2, jax.devices()
    from conftest import tiny_config
    from vlae_jax import datasets, experiment, parallel, train
    config = tiny_config()
    model = experiment.create_model(config)
    batch = datasets.read_digits("train").batch(np.arange(16))
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
      mesh = parallel.make_mesh(devices)
      state = jax.device_put(experiment.create_train_state(config, model),
                             parallel.replicated(mesh))
      step = train.make_train_step(config, model, mesh)
      sharded = parallel.global_batch(batch, mesh)
      assert len(sharded["image"].sharding.device_set) == len(devices)
      state, metrics = step(state, sharded)
      results.append((jax.device_get(state), float(metrics["loss"])))
    (s1, l1), (s2, l2) = results
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    # Adam's first moment after one step is 0.1 * gradient: the gradients of
    # the global batch agree.
    jax.tree_util.tree_map(close, s1.opt_state[0].mu, s2.opt_state[0].mu)
    jax.tree_util.tree_map(close, s1.batch_stats, s2.batch_stats)
    # Params move by lr * sign(g) where |g| is round-off (biases before batch
    # norm have zero true gradient), so they agree to 2 * lr.
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(
            a, b, atol=2.01 * config.learning_rate), s1.params, s2.params)
    scale = max(float(np.abs(x).max())
                for x in jax.tree_util.tree_leaves(s1.opt_state[0].mu))
    assert scale > 1e-2  # the tolerance above is small against the gradients
    print("ok", l1, l2)
""")


def test_two_devices_match_one_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2 "
             + SUITE_XLA_FLAGS,
             JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run(
      [sys.executable, "-c", SCRIPT], cwd=os.path.join(ROOT, "tests"),
      env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.startswith("ok")
