"""The ladder's shapes, mirror structure and batch-norm modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from configs import celeba, default, mnist
from vlae_jax import datasets, experiment, models, objective


@pytest.mark.parametrize("get_config,image_shape,dims", [
    (default.get_config, (8, 8, 1), (2, 2, 2)),
    (mnist.get_config, (28, 28, 1), (2, 2, 2)),
    (celeba.get_config, (64, 64, 3), (7, 10, 10, 10)),
])
def test_output_shapes_and_rung_count(get_config, image_shape, dims):
  config = get_config()
  assert datasets.image_shape(config) == image_shape
  model = experiment.create_model(config)
  images = jnp.full((3,) + image_shape, 0.5)
  variables = jax.eval_shape(
      lambda: model.init({"params": jax.random.PRNGKey(0),
                          "noise": jax.random.PRNGKey(1)}, images))
  (logits, means, stds, codes) = jax.eval_shape(
      lambda v: model.apply(v, images, rngs={"noise": jax.random.PRNGKey(2)}),
      variables)
  assert logits.shape == (3,) + image_shape
  assert model.num_rungs == len(dims)
  assert [m.shape for m in means] == [(3, dim) for dim in dims]
  assert [c.shape for c in codes] == [(3, dim) for dim in dims]


def test_reference_mnist_and_celeba_rung_shapes():
  # ../shared/REFERENCE.md: MNIST rung 1 reads 7x7x128; CelebA rungs read
  # 32x32x64, 8x8x256, 4x4x512 and a dense 1024.
  c = mnist.get_config().model
  shapes = models.rung_shapes((28, 28, 1), c.rung_kinds, c.rung_widths)
  assert [s[-1] for s in shapes] == [(7, 7, 128), (1024,), (1024,)]
  c = celeba.get_config().model  # rung 0's second conv has stride 1
  shapes = models.rung_shapes((64, 64, 3), c.rung_kinds, c.rung_widths,
                              c.rung_strides)
  assert [s[-1] for s in shapes] == [(32, 32, 64), (8, 8, 256), (4, 4, 512),
                                     (1024,)]


def test_batch_norm_uses_batch_statistics_only_in_training():
  config = default.get_config()
  model = experiment.create_model(config)
  images = jax.random.uniform(jax.random.PRNGKey(0), (8, 8, 8, 1))
  # Jitted: one compile each instead of one per operation.
  variables = jax.jit(model.init)({"params": jax.random.PRNGKey(0),
                                   "noise": jax.random.PRNGKey(0)}, images)
  means = jax.jit(lambda v, x, train: model.apply(
      v, x, train=train, sample=False, method=model.encode,
      mutable=["batch_stats"] if train else False), static_argnums=2)
  encode = jax.jit(lambda v, x: model.apply(v, x, sample=False,
                                            method=model.encode))
  # Eval mode: an image's code does not depend on the rest of the batch.
  alone = encode(variables, images[:1])
  together = encode(variables, images)
  np.testing.assert_allclose(alone[0][0], together[0][0][:1], atol=1e-5)
  # Train mode: it does, and the running averages move.
  (train_means, _, _), updates = means(variables, images, True)
  (train_alone, _, _), _ = means(variables, images[:2], True)
  assert not np.allclose(train_alone[0][:1], train_means[0][:1], atol=1e-4)
  before = jax.tree_util.tree_leaves(variables["batch_stats"])
  after = jax.tree_util.tree_leaves(updates["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_posterior_std_is_positive_and_sampling_uses_the_noise_rng():
  model = experiment.create_model(default.get_config())
  images = jnp.zeros((4, 8, 8, 1))
  v = model.init({"params": jax.random.PRNGKey(0),
                  "noise": jax.random.PRNGKey(0)}, images)
  enc = lambda key: model.apply(v, images, rngs={"noise": key},
                                method=model.encode)
  means, stds, a = enc(jax.random.PRNGKey(1))
  _, _, b = enc(jax.random.PRNGKey(2))
  assert all(float(jnp.min(s)) > 1e-3 for s in stds)
  assert not np.allclose(a[0], b[0])
  for m, s, z, w in zip(means, stds, a, b):
    # Both draws are mean + std * eps: eps recovered is standard-normal-ish.
    eps = (z - m) / s
    assert np.all(np.abs(eps) < 6)


def test_gated_sum_gate_starts_at_one_tenth():
  model = experiment.create_model(default.get_config())
  v = model.init({"params": jax.random.PRNGKey(0),
                  "noise": jax.random.PRNGKey(0)}, jnp.zeros((2, 8, 8, 1)))
  gates = [p["gate"] for name, p in v["params"].items()
           if name.startswith("generative") and "gate" in p]
  assert len(gates) == 2  # every rung but the top one
  assert all(np.allclose(g, 0.1) for g in gates)


def test_uneven_downsampling_is_refused():
  with pytest.raises(ValueError, match="cannot halve a 7x7"):
    models.rung_shapes((28, 28, 1), ("conv",), ((8, 8, 8),))


def reference_celeba_model():
  from configs import celeba_reference
  c = celeba_reference.get_config()
  return c, models.model_from_config(c.model, (64, 64, 3))


def test_reference_celeba_layers_strides_and_shapes():
  # ../shared/REFERENCE.md: conv64 s2, conv64 s1 | conv128 s2, conv128 s1,
  # conv256 s2 | conv256 s1, conv512 s2, conv512 s1 | dense1024 x2.
  c, _ = reference_celeba_model()
  m = c.model
  shapes = models.rung_shapes((64, 64, 3), m.rung_kinds, m.rung_widths,
                              m.rung_strides)
  assert shapes[0] == [(64, 64, 3), (32, 32, 64), (32, 32, 64)]
  assert shapes[1] == [(32, 32, 64), (16, 16, 128), (16, 16, 128),
                       (8, 8, 256)]
  assert shapes[2] == [(8, 8, 256), (8, 8, 256), (4, 4, 512), (4, 4, 512)]
  assert shapes[3] == [(4, 4, 512), (1024,), (1024,)]
  with pytest.raises(ValueError, match=r"rung_strides\[0\] = \(2,\) must give"):
    models.rung_shapes((64, 64, 3), ("conv",), ((8, 8),), ((2,),))


def test_head_branches_have_their_own_weights_and_feed_the_heads_alone():
  # The reference's pattern at toy size: a stride-2 and a stride-1 conv, a
  # second conv rung, a dense top.
  model = models.VLAE(image_shape=(16, 16, 3), latent_dims=(2, 2, 2),
                      rung_kinds=("conv", "conv", "dense"),
                      rung_widths=((8, 8), (8,), (16,)),
                      rung_strides=((2, 1), (2,), ()), combine="concat",
                      head_branches=True, decoder_activation="relu")
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 3))
  variables = jax.jit(model.init)({"params": jax.random.PRNGKey(1),
                                   "noise": jax.random.PRNGKey(2)}, x)
  rung0 = variables["params"]["inference_rungs_0"]
  assert {"conv0", "conv1", "head_conv0", "head_conv1"} <= set(rung0)
  assert rung0["conv1"]["kernel"].shape == (4, 4, 8, 8)  # the stride-1 conv

  def mean0(params):
    return jnp.sum(model.apply({**variables, "params": params}, x,
                               sample=False, method=model.encode)[0][0])

  grads = jax.jit(jax.grad(mean0))(variables["params"])["inference_rungs_0"]
  # z_0's heads read the ladder branch only, never h_0 (the inference branch).
  assert float(jnp.abs(grads["conv0"]["kernel"]).max()) == 0.0
  assert float(jnp.abs(grads["head_conv0"]["kernel"]).max()) > 0.0
  logits = jax.jit(lambda v: model.apply(v, x, sample=False))(variables)[0]
  assert logits.shape == (2, 16, 16, 3)


def test_decoder_activation_changes_only_the_generative_rungs():
  base = dict(image_shape=(28, 28, 1), latent_dims=(2, 2, 2),
              rung_kinds=("conv", "dense", "dense"),
              rung_widths=((8, 16), (32,), (32,)))
  mixed = models.VLAE(**base, activation="leaky_relu",
                      decoder_activation="relu")
  relu = models.VLAE(**base, activation="relu")
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, 28, 28, 1))
  variables = jax.jit(mixed.init)({"params": jax.random.PRNGKey(1),
                                   "noise": jax.random.PRNGKey(2)}, x)
  codes = [jax.random.normal(jax.random.PRNGKey(l), (3, 2)) for l in range(3)]
  np.testing.assert_array_equal(
      mixed.apply(variables, codes, method=mixed.decode),
      relu.apply(variables, codes, method=relu.decode))
  leaky = models.VLAE(**base)
  assert not np.array_equal(
      mixed.apply(variables, codes, method=mixed.decode),
      leaky.apply(variables, codes, method=leaky.decode))
  np.testing.assert_array_equal(  # the encoder keeps leaky ReLU
      mixed.apply(variables, x, sample=False, method=mixed.encode)[0][2],
      leaky.apply(variables, x, sample=False, method=leaky.encode)[0][2])


def test_per_rung_std_floors_bound_each_rungs_posterior_std():
  config = tiny_config()
  config.model.rung_std_floors = (0.001, 0.5, 0.25)
  model = experiment.create_model(config)
  state = experiment.create_train_state(config, model)
  images = jax.random.uniform(jax.random.PRNGKey(2), (16, 8, 8, 1))
  _, stds, _ = model.apply(objective.model_variables(state.params,
                                                 state.batch_stats),
                           images, method=model.encode, sample=False)
  # std = sigmoid(.) + floor: in (floor, 1 + floor) for each rung's floor
  for std, floor in zip(stds, (0.001, 0.5, 0.25)):
    assert float(std.min()) > floor and float(std.max()) < 1 + floor
  with pytest.raises(ValueError, match=r"std_floor has 2 entries"):
    models.per_rung((0.1, 0.2), 3, "model.std_floor")


def test_per_rung_std_ceilings_rescale_the_gate_between_floor_and_ceiling():
  from vlae_jax import configuration
  config = tiny_config()
  images = jax.random.uniform(jax.random.PRNGKey(2), (16, 8, 8, 1))
  stds = {}
  for ceilings in ((), (0.3, 0.0, 1.0)):
    config.model.rung_std_ceilings = ceilings
    model = experiment.create_model(config)
    state = experiment.create_train_state(config, model)  # same seed, params
    _, stds[ceilings], _ = model.apply(
        objective.model_variables(state.params, state.batch_stats), images,
        method=model.encode, sample=False)
  floor = config.model.std_floor
  for l, ceiling in enumerate((0.3, 0.0, 1.0)):
    gate = np.asarray(stds[()][l]) - floor  # sigmoid(.) of the same params
    want = gate + floor if ceiling == 0 else floor + (ceiling - floor) * gate
    np.testing.assert_allclose(stds[(0.3, 0.0, 1.0)][l], want, rtol=1e-6)
  assert float(stds[(0.3, 0.0, 1.0)][0].max()) < 0.3
  for bad in ((0.3, 0.5), (0.3, 0.5, 1.5), (0.3, 0.0005, 0.0)):
    config.model.rung_std_ceilings = bad
    with pytest.raises(configuration.ConfigError, match="rung_std_ceilings"):
      configuration.validate(config)


def test_mnist_hierarchy_config_is_mnist_with_a_wider_top_rung_trained_last():
  from configs import mnist_hierarchy
  from vlae_jax import configuration, objective
  config = mnist_hierarchy.get_config()
  configuration.validate(config)
  model = experiment.create_model(config)
  images = jnp.full((3, 28, 28, 1), 0.5)
  variables = jax.eval_shape(
      lambda: model.init({"params": jax.random.PRNGKey(0),
                          "noise": jax.random.PRNGKey(1)}, images))
  _, means, _, _ = jax.eval_shape(
      lambda v: model.apply(v, images, rngs={"noise": jax.random.PRNGKey(2)}),
      variables)
  assert [m.shape for m in means] == [(3, 2), (3, 2), (3, 8)]
  # Middle rung alone at first (fading in too), each scale (step - start +
  # 1) / 200 clipped to [0, 1].
  for step, expected in ((0, (0, 1 / 200, 0)), (500, (101 / 200, 1, 0)),
                         (900, (1, 1, 101 / 200)), (1000, (1, 1, 1))):
    np.testing.assert_allclose(objective.rung_scales(config, step), expected)
  plain = mnist.get_config()
  assert config.model.rung_widths == plain.model.rung_widths
  assert config.loss.reconstruction == plain.loss.reconstruction
