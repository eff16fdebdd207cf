"""Every conv / transposed-conv form is nn.Conv / nn.ConvTranspose exactly."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from vlae_jax import convolutions, experiment, models, objective


def _check(module, reference, x, atol):
  variables = reference.init(jax.random.PRNGKey(1), x)
  variables["params"]["bias"] = jnp.arange(
      variables["params"]["bias"].shape[0], dtype=jnp.float32) * 0.1
  np.testing.assert_allclose(module.apply(variables, x),
                             reference.apply(variables, x), atol=atol)
  loss = lambda m: lambda v, x: jnp.sum(jnp.sin(m.apply(v, x)))
  got = jax.grad(loss(module), argnums=(0, 1))(variables, x)
  want = jax.grad(loss(reference), argnums=(0, 1))(variables, x)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, atol=10 * atol), got, want)


@pytest.mark.parametrize("form", convolutions.FORMS)
@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (1, 2, 2, 5)])
def test_conv_forms_equal_nn_conv(form, shape):
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  _check(models.DownConv(7, form=form),
         nn.Conv(7, (4, 4), strides=(2, 2), padding="SAME"), x, 1e-5)


@pytest.mark.parametrize("form", convolutions.FORMS)
@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 1, 1, 5)])
def test_conv_transpose_forms_equal_nn_conv_transpose(form, shape):
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  _check(models.UpConv(6, form=form),
         nn.ConvTranspose(6, (4, 4), strides=(2, 2), padding="SAME"), x, 1e-5)


def test_native_forms_are_flax_bit_for_bit():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 4))
  for ours, flax_layer in [
      (models.DownConv(5, form="native"),
       nn.Conv(5, (4, 4), strides=(2, 2), padding="SAME")),
      (models.UpConv(5, form="native"),
       nn.ConvTranspose(5, (4, 4), strides=(2, 2), padding="SAME"))]:
    variables = flax_layer.init(jax.random.PRNGKey(2), x)
    # Same parameter names, shapes and initial values from the same key.
    jax.tree_util.tree_map(np.testing.assert_array_equal,
                           ours.init(jax.random.PRNGKey(2), x), variables)
    np.testing.assert_array_equal(ours.apply(variables, x),
                                  flax_layer.apply(variables, x))


def test_bfloat16_forms_compute_in_bfloat16():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 4))
  for module in (models.DownConv(8, form="gemm", dtype=jnp.bfloat16),
                 models.UpConv(8, form="gemm", dtype=jnp.bfloat16)):
    variables = module.init(jax.random.PRNGKey(1), x)
    assert variables["params"]["kernel"].dtype == jnp.float32
    assert jax.eval_shape(module.apply, variables, x).dtype == jnp.bfloat16
    grads = jax.jit(jax.grad(lambda v, x: jnp.sum(module.apply(v, x).astype(
        jnp.float32)), argnums=(0, 1)))(variables, x)
    assert grads[0]["params"]["kernel"].dtype == jnp.float32
    assert grads[1].dtype == jnp.float32


def test_auto_choice_by_backend_and_shape():
  assert convolutions.choose_form((100, 64, 64, 3), backend="cpu") == "gemm"
  assert convolutions.choose_form((100, 8, 8, 256), backend="cpu") == "gemm"
  # odd sizes (a 4x4 stride-2 'SAME' conv pads them unevenly) stay native
  assert convolutions.choose_form((100, 7, 7, 128), backend="cpu") == "native"
  assert convolutions.choose_form((100, 64, 64, 3), backend="gpu") == "native"
  # every transposed conv (mnist's 7x7 -> 14x14 decoder layer too): the
  # native one's gradient is many times slower on the CPU
  assert convolutions.choose_form((100, 7, 7, 128), True, "cpu") == "gemm"
  assert convolutions.choose_form((100, 4, 4, 1024), True, "cpu") == "gemm"
  assert convolutions.choose_form((100, 4, 4, 1024), True, "gpu") == "native"
  with pytest.raises(ValueError, match="even height and width, got 7x7"):
    convolutions.conv(jnp.zeros((1, 7, 7, 1)), jnp.zeros((4, 4, 1, 1)),
                      "gemm")
  with pytest.raises(ValueError, match="unknown conv form 'im2col'"):
    convolutions.conv(jnp.zeros((1, 4, 4, 1)), jnp.zeros((4, 4, 1, 1)),
                      "im2col")


@pytest.mark.parametrize("upsample,downsample", [
    ("gemm", "gemm"), ("auto", "auto")])
def test_the_model_computes_one_function_in_every_form(upsample, downsample):
  config = tiny_config(dataset="digits")
  config.model.upsample, config.model.downsample = "native", "native"
  reference = experiment.create_model(config)
  state = experiment.create_train_state(config, reference)
  config.model.upsample, config.model.downsample = upsample, downsample
  model = experiment.create_model(config)
  batch = {"image": jax.random.uniform(jax.random.PRNGKey(4), (16, 8, 8, 1))}
  key = jax.random.PRNGKey(5)
  outs = []
  for m in (reference, model):
    # Jitted: op by op, the two models' hundreds of small ops each compile.
    (loss, (metrics, _)), grads = jax.jit(jax.value_and_grad(
        lambda p: objective.loss_fn(p, state.batch_stats, batch, key, model=m,
                                    config=config), has_aux=True))(
                                        state.params)
    outs.append((loss, grads))
  np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-5)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4),
      outs[0][1], outs[1][1])
