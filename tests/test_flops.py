"""Useful-FLOP accounting against XLA's own count of single layers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from configs import celeba, mnist
from vlae_jax import datasets, flops


def xla_flops(fn, *shapes):
  args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def layer_flops(module, shape):
  params = module.init(jax.random.PRNGKey(0), jnp.zeros(shape))
  return xla_flops(lambda x: module.apply(params, x), shape)


@pytest.mark.parametrize("inp,out", [((64, 64, 3), 64), ((16, 16, 128), 256),
                                     ((28, 28, 1), 64), ((7, 9, 5), 3)])
def test_conv_counts_against_xla_and_a_brute_force_count(inp, out):
  conv = nn.Conv(out, (4, 4), strides=(2, 2), padding="SAME", use_bias=False)
  layer = flops._conv("c", inp, (-(-inp[0] // 2), -(-inp[1] // 2), out))
  # XLA counts the taps that meet real input, exactly.
  assert layer.in_bounds_flops == layer_flops(conv, (1,) + inp)
  assert layer.forward_flops == 2.0 * layer.output_shape[0] * \
      layer.output_shape[1] * out * 16 * inp[2]
  # Brute force: push ones through the conv and count kernel-tap hits.
  ones = nn.Conv(1, (4, 4), strides=(2, 2), padding="SAME", use_bias=False)
  hits = ones.apply({"params": {"kernel": jnp.ones((4, 4, 1, 1))}},
                    jnp.ones((1, inp[0], inp[1], 1)))
  assert layer.in_bounds_flops == 2.0 * float(hits.sum()) * inp[2] * out


def test_deconv_counts_the_pairs_of_the_conv_it_transposes():
  deconv = flops._deconv("d", (8, 8, 128), (16, 16, 64))
  conv = flops._conv("c", (16, 16, 64), (8, 8, 128))
  assert deconv.in_bounds_flops == conv.in_bounds_flops
  assert deconv.forward_flops == 2.0 * 8 * 8 * 128 * 16 * 64
  # Brute force on the real layer: a transposed conv of ones with a kernel of
  # ones gives, at each output, the number of taps that reach it.
  up = nn.ConvTranspose(1, (4, 4), strides=(2, 2), padding="SAME",
                        use_bias=False)
  hits = up.apply({"params": {"kernel": jnp.ones((4, 4, 1, 1))}},
                  jnp.ones((1, 8, 8, 1)))
  assert hits.shape == (1, 16, 16, 1)
  assert deconv.in_bounds_flops == 2.0 * float(hits.sum()) * 128 * 64


def test_dense_count_equals_xlas_count():
  dense = nn.Dense(1024, use_bias=False)
  assert flops._dense("d", (4, 4, 512), (1024,)).forward_flops == \
      pytest.approx(layer_flops(dense, (1, 8192)), rel=1e-6)


# Counted by hand (batch 100, 3x forward). celeba: the reference widths'
# 178.4 (one-layer rung 0) plus the recipe's stride-1 conv in rung 0, per
# image 2*32*32*64*16*64 in the encoder and, in the decoder, a stride-1
# transposed conv from the concat's 128 channels to 64 (2*32*32*128*16*64)
# before the last layer, which then reads 64 channels, not 128
# (2*32*32*(64-128)*16*3): +396.4 MFLOP per image, +118.9 GFLOP per step
# (297.3). The ladder branches: a copy of each rung's layers for its heads,
# 2*32*32*64*16*3 + 2*32*32*64*16*64 (rung 0) + 2*16*16*128*16*64 +
# 2*8*8*256*16*128 (rung 1) + 2*4*4*512*16*256 (rung 2) + 2*8192*1024
# (rung 3) = 358.6 MFLOP per image, +107.6 GFLOP per step. A 7-D rung 0:
# its heads and its decoder projection 2*32*32*64*(2*3 + 3) fewer, -0.35
# GFLOP. 297.3 + 107.6 - 0.35 = 404.6.
@pytest.mark.parametrize("module,expected_gflop", [(celeba, 404.6),
                                                   (mnist, 19.5)])
def test_train_step_totals(module, expected_gflop):
  config = module.get_config()
  assert flops.train_step_flops(config) / 1e9 == pytest.approx(
      expected_gflop, abs=0.05)


@pytest.mark.parametrize("downsample,count", [
    ("native", "in_bounds_flops"),  # XLA's conv skips the padding taps
    ("gemm", "forward_flops")])  # patches hold every tap, padding included
def test_encoder_forward_matches_xla_on_the_real_model(downsample, count):
  from vlae_jax import models
  config = celeba.get_config()
  config.model.norm = "none"  # XLA also counts batch norm's elementwise work
  config.model.downsample = downsample
  config.model.matmul = "xla"  # XLA cannot count a BLAS custom call's FLOPs
  shape = datasets.image_shape(config)
  model = models.model_from_config(config.model, shape)
  # The parameters as abstract arguments: neither an op-by-op init of the
  # full model nor its weights compiled in as constants.
  variables = jax.eval_shape(lambda: model.init(
      {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)},
      jnp.zeros((1,) + shape)))
  cost = jax.jit(lambda v, x: model.apply(v, x, sample=False,
                                          method=model.encode)).lower(
      variables, jax.ShapeDtypeStruct((1,) + shape, jnp.float32)).compile(
          ).cost_analysis()
  xla = float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])
  def counted(layer):
    # Rung 0's stride-1 conv is XLA's own conv in every form: in bounds.
    stride_1 = layer.kind == "conv" and layer.input_shape[:2] == \
        layer.output_shape[:2]
    return layer.in_bounds_flops if stride_1 else getattr(layer, count)
  # With the ladder branches the top rung's own layers feed nothing (its
  # heads read the branch, and no rung is above), so XLA drops them from
  # the encoder. The train step runs their forward for batch norm's
  # statistics, with no gradient; flops.py counts them as trained: 5.0 of
  # celeba's 404.6 GFLOP a step are no useful work.
  top = f"encoder.rung{len(config.model.latent_dims) - 1}."
  dead = lambda layer: (config.model.head_branches and layer.name.startswith(
      top) and not layer.name[len(top):].startswith(("head_", "heads")))
  analytic = sum(counted(l) for l in flops.layer_table(config.model, shape)
                 if l.name.startswith("encoder") and not dead(l))
  # XLA adds the activations, biases and std sigmoid: well under 1% with
  # its conv; 3.4% over every tap with the patch products (measured with
  # the weights as arguments, as in the train step, on the one-layer rung 0:
  # 235.7 vs 228.0 MFLOP per image).
  assert analytic <= xla <= (1.01 if downsample == "native" else 1.04) * analytic


@pytest.mark.parametrize("inp,out", [((32, 32, 64), 64), ((8, 8, 256), 256)])
def test_stride_1_conv_counts_against_xla(inp, out):
  conv = nn.Conv(out, (4, 4), padding="SAME", use_bias=False)
  layer = flops._conv("c", inp, inp[:2] + (out,))
  assert layer.in_bounds_flops == layer_flops(conv, (1,) + inp)
  assert layer.forward_flops == 2.0 * inp[0] * inp[1] * out * 16 * inp[2]
  deconv = flops._deconv("d", inp[:2] + (out,), inp)
  assert deconv.in_bounds_flops == layer.in_bounds_flops


def test_head_branches_count_each_encoder_layer_twice():
  from configs import mnist_reference
  plain, ref = mnist.get_config(), mnist_reference.get_config()
  shape = (28, 28, 1)
  encoder = lambda c: sum(l.forward_flops for l in flops.layer_table(
      c.model, shape) if l.name.startswith("encoder") and "heads" not in
      l.name)
  decoder = lambda c: sum(l.forward_flops for l in flops.layer_table(
      c.model, shape) if l.name.startswith("decoder"))
  assert encoder(ref) == 2 * encoder(plain)
  assert decoder(ref) == decoder(plain)
