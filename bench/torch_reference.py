"""Ours against an eager PyTorch port of the same network, in one process.

    pip install -r bench/requirements-torch.txt     # CPU PyTorch, bench only
    python bench/torch_reference.py [--configs mnist,celeba] [--rounds 5]

``TorchVLAE`` builds, for any config, the network ``vlae_jax.models.VLAE``
builds: the same layers (4x4 convs of stride 2, or 1 where
``model.rung_strides`` says), widths, batch norm (momentum 0.1 = Flax's
0.9), leaky ReLU 0.1, heads (with ``model.rung_std_ceilings`` and floors),
combine, the progressive schedule's code scales and the decoder, asserting
the same parameter count. Its train step is the same objective (``rec_weight`` x L1 through a
sigmoid + ``mmd_weight`` x the reference-kernel V-statistic MMD^2 per rung
against a fresh N(0, I) draw; the config's reconstruction: L1 or L2 through
a sigmoid, or Bernoulli cross-entropy) and Adam (``fused=True``), eager,
float32.

``--device cuda`` runs PyTorch on the GPU (ours on JAX's default device);
``--torch_forms eager,compiled`` times PyTorch eager and ``torch.compile``
in the same rounds; TF32 is off in both frameworks (full float32).

``--forms auto,gemm`` times several of our conv forms (``model.downsample``
and ``model.upsample``; ``down/up`` for two different ones) in the same
interleaved rounds; ``form@matmul`` also sets ``model.matmul``
(``--forms auto@xla,auto@blas``: XLA's matrix products against BLAS's).

Both steps run on the same fixed batch, interleaved (ours, torch, ours, ...)
``--rounds`` times; the script prints images/s as median [min-max], the ratio
ours / PyTorch, useful MFU (``vlae_jax.flops``) against a float32 matmul peak
measured in this process for each framework, and writes
results/performance/torch_reference.json.
"""

import argparse
import functools
import importlib
import math
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from vlae_jax import runtime  # pylint: disable=g-import-not-at-top
# As main.py does, before either framework starts a thread; it serves both
# frameworks' buffers alike (VLAE_JAX_SYSTEM_MALLOC=1 times glibc's default).
RETAINED_HOST_MEMORY = runtime.retain_freed_host_memory()

import jax  # pylint: disable=g-import-not-at-top
import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import matmul_peak, write_json  # pylint: disable=g-import-not-at-top
from vlae_jax import datasets, experiment, flops, models, train  # pylint: disable=g-import-not-at-top


def _norm(shape, norm):
  """Batch norm over the channels (3-D feature shapes) or units (1-D)."""
  if norm != "batch":
    return nn.Identity()
  if len(shape) == 3:
    return nn.BatchNorm2d(shape[-1], momentum=0.1, eps=1e-5)
  return nn.BatchNorm1d(shape[0], momentum=0.1, eps=1e-5)


def _nchw(h, shape):
  """Flat ``[B, prod(shape)]`` -> ``[B, C, H, W]`` (or ``[B, units]``)."""
  if len(shape) == 3:
    return h.view(h.shape[0], shape[2], shape[0], shape[1])
  return h


class TorchInferenceRung(nn.Module):
  """``models.InferenceRung``: layers (4x4 convs of stride 2 or 1, or
  dense), then mean and std heads (std in [floor, ceiling] when a ceiling
  is set)."""

  def __init__(self, kind, shapes, strides, dim, norm, act, std_floor,
               std_ceiling):
    super().__init__()
    self.kind, self.std_floor, self.std_ceiling = kind, std_floor, std_ceiling
    self.layers, self.norms = nn.ModuleList(), nn.ModuleList()
    for before, after, stride in zip(shapes[:-1], shapes[1:], strides):
      if kind == "conv" and stride == 1:
        # 'SAME' for an even kernel pads 1 before and 2 after, like XLA.
        layer = nn.Conv2d(before[-1], after[-1], 4, 1, padding="same")
      elif kind == "conv":
        layer = nn.Conv2d(before[-1], after[-1], 4, 2, 1)
      else:
        layer = nn.Linear(math.prod(before), after[0])
      self.layers.append(layer)
      self.norms.append(_norm(after, norm))
    self.act = act()
    self.mean = nn.Linear(math.prod(shapes[-1]), dim)
    self.std = nn.Linear(math.prod(shapes[-1]), dim)

  def forward(self, h):
    for layer, norm in zip(self.layers, self.norms):
      if self.kind == "dense":
        h = h.flatten(1)
      h = self.act(norm(layer(h)))
    flat = h.flatten(1)
    mean = self.mean(flat)
    gate = torch.sigmoid(self.std(flat))
    std = (self.std_floor + (self.std_ceiling - self.std_floor) * gate
           if self.std_ceiling > 0 else gate + self.std_floor)
    return h, mean + std * torch.randn_like(mean)


class TorchGenerativeRung(nn.Module):
  """``models.GenerativeRung``: combine, then the mirrored layers."""

  def __init__(self, kind, shapes, strides, dim, combine, norm, act, is_top,
               is_bottom):
    super().__init__()
    self.kind, self.combine, self.is_top = kind, combine, is_top
    self.shapes = [tuple(s) for s in shapes]
    top = self.shapes[-1]
    self.project = nn.Linear(dim, math.prod(top))
    self.top_norm = _norm(top, norm) if is_top else None
    if not is_top and combine == "gated_sum":
      self.gate = nn.Parameter(torch.full(
          (top[2], top[0], top[1]) if len(top) == 3 else top, 0.1))
    current = top if is_top or combine == "gated_sum" else \
        top[:-1] + (2 * top[-1],)
    self.layers, self.norms = nn.ModuleList(), nn.ModuleList()
    for i in reversed(range(len(shapes) - 1)):
      target = self.shapes[i]
      if kind == "conv" and strides[i] == 1:
        # A stride-1 4x4 'SAME' transposed conv: a conv with the flipped
        # kernel, the same FLOPs and parameter count.
        layer = nn.Conv2d(current[-1], target[-1], 4, 1, padding="same")
      elif kind == "conv":
        layer = nn.ConvTranspose2d(current[-1], target[-1], 4, 2, 1)
      else:
        layer = nn.Linear(math.prod(current), math.prod(target))
      self.layers.append(layer)
      self.norms.append(nn.Identity() if is_bottom and i == 0
                        else _norm(target, norm))
      current = target
    self.is_bottom = is_bottom
    self.act = act()

  def forward(self, upper, z):
    projected = _nchw(self.project(z), self.shapes[-1])
    if self.is_top:
      h = self.act(self.top_norm(projected))
    elif self.combine == "gated_sum":
      h = upper + self.gate * projected
    else:
      h = torch.cat([upper, projected], dim=1)
    targets = list(reversed(range(len(self.shapes) - 1)))
    for i, layer, norm in zip(targets, self.layers, self.norms):
      if self.kind == "dense":
        h = _nchw(layer(h.flatten(1)), self.shapes[i])
      else:
        h = layer(h)
      if not (self.is_bottom and i == 0):
        h = self.act(norm(h))
    return h


class TorchVLAE(nn.Module):
  """``models.VLAE`` in PyTorch (NCHW), built from the same ``config.model``."""

  def __init__(self, model_config, image_shape):
    super().__init__()
    c = model_config
    given_strides = tuple(tuple(s) for s in c.get("rung_strides", ()) or ())
    shapes = models.rung_shapes(image_shape, c.rung_kinds, c.rung_widths,
                                given_strides or None)
    strides = models.layer_strides(c.rung_kinds, c.rung_widths,
                                   given_strides or None)
    act = {"leaky_relu": lambda: nn.LeakyReLU(0.1), "relu": nn.ReLU,
           "swish": nn.SiLU, "elu": nn.ELU}[c.activation]
    rungs = len(shapes)
    floors = models.per_rung(tuple(c.get("rung_std_floors", ()) or ()) or
                             c.std_floor, rungs, "model.std_floor")
    ceilings = models.per_rung(tuple(c.get("rung_std_ceilings", ()) or ())
                               or 0.0, rungs, "model.rung_std_ceilings")
    self.inference = nn.ModuleList(
        TorchInferenceRung(kind, rung, stride, dim, c.norm, act, floor,
                           ceiling)
        for kind, rung, stride, dim, floor, ceiling in zip(
            c.rung_kinds, shapes, strides, c.latent_dims, floors, ceilings))
    self.generative = nn.ModuleList(
        TorchGenerativeRung(kind, rung, stride, dim, c.combine, c.norm, act,
                            is_top=l == rungs - 1, is_bottom=l == 0)
        for l, (kind, rung, stride, dim) in enumerate(zip(
            c.rung_kinds, shapes, strides, c.latent_dims)))

  def forward(self, x, rung_scales=None):
    """``rung_scales``: None, or per rung the progressive schedule's factor
    of the code entering the decoder (``models.VLAE.decode``)."""
    codes, h = [], x
    for rung in self.inference:
      h, z = rung(h)
      codes.append(z)
    h = None
    for l in reversed(range(len(codes))):
      z = codes[l] if rung_scales is None else codes[l] * rung_scales[l]
      h = self.generative[l](h, z)
    return h, codes


def torch_mmd(x, y):
  """The reference kernel exp(-||a-b||^2 / d^2), biased V-statistic."""
  d = x.shape[1]
  kernel = lambda a, b: torch.exp(-torch.cdist(a, b).square() / d**2)
  return kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()


def torch_step_fn(config, image_shape, device="cpu", compiled=False):
  """``(model, step)``: ``step(images)`` is one Adam step. ``compiled``
  wraps the forward pass and loss in ``torch.compile`` (the backward pass
  is compiled with it by AOTAutograd; fused Adam stays eager)."""
  model = TorchVLAE(config.model, image_shape).to(device)
  optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                               fused=True)
  model.train()
  starts = tuple(config.get("rung_start_steps", ()) or ())
  fade = config.get("rung_fade_steps", 0)
  count = [0]

  def scales():
    """``objective.rung_scales`` at the step count, as a tensor (None
    without a schedule)."""
    if not starts:
      return None
    step = float(count[0])
    values = [min(max((step - s + 1.0) / fade, 0.0), 1.0) if fade > 0
              else float(step >= s) for s in starts]
    return torch.tensor(values, device=device)

  def loss_fn(images, rung_scales):
    logits, codes = model(images, rung_scales)
    kind = config.loss.get("reconstruction", "l1")
    if kind == "bernoulli":
      rec = nn.functional.binary_cross_entropy_with_logits(logits, images)
    elif kind == "l2":
      rec = torch.mean(torch.square(images - torch.sigmoid(logits)))
    else:
      rec = torch.mean(torch.abs(images - torch.sigmoid(logits)))
    mmds = [torch_mmd(z, torch.randn_like(z)) for z in codes]
    return config.loss.rec_weight * rec + config.loss.mmd_weight * sum(mmds)

  forward = torch.compile(loss_fn) if compiled else loss_fn

  def step(images):
    loss = forward(images, scales())
    count[0] += 1
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss
  return model, step


def jax_parameter_count(config, image_shape):
  model = experiment.create_model(config, image_shape)
  state = jax.eval_shape(lambda: experiment.create_train_state(config, model))
  return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(
      state.params))


def _sync(device):
  if device == "cuda":
    torch.cuda.synchronize()


def peaks(size=2048, repeats=5, device="cpu"):
  jax_peak = matmul_peak("float32", size)
  if device == "cuda":
    size, repeats = 8192, 20
  t = torch.ones(size, size, device=device)
  t @ t
  _sync(device)
  start = time.perf_counter()
  for _ in range(repeats):
    t @ t
  _sync(device)
  torch_peak = 2 * size**3 * repeats / (time.perf_counter() - start)
  return jax_peak, torch_peak


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="mnist,celeba")
  parser.add_argument("--batch", type=int, default=100)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=3,
                      help="steps per timed window")
  parser.add_argument("--threads", type=int, default=0,
                      help="PyTorch threads (0: every core)")
  parser.add_argument("--forms", default="auto",
                      help="our conv forms to time, comma-separated: a form "
                      "of both model.downsample and model.upsample, or "
                      "down/up; @xla, @blas or @auto after it sets "
                      "model.matmul")
  parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                      help="PyTorch's device (ours runs on JAX's default)")
  parser.add_argument("--torch_forms", default="eager",
                      help="eager, compiled (torch.compile) or both, "
                      "comma-separated")
  parser.add_argument("--out", default="results/performance/torch_reference.json")
  args = parser.parse_args()
  torch_forms = args.torch_forms.split(",")
  if set(torch_forms) - {"eager", "compiled"}:
    raise SystemExit(f"--torch_forms={args.torch_forms}: use eager, compiled "
                     "or both.")
  torch.set_num_threads(args.threads or datasets.default_decode_workers())
  torch.manual_seed(0)
  # Full float32 products and convolutions, as ours (JAX's "highest").
  torch.backends.cuda.matmul.allow_tf32 = False
  torch.backends.cudnn.allow_tf32 = False
  results = {"device": jax.devices()[0].device_kind,
             "torch_device": (torch.cuda.get_device_name()
                              if args.device == "cuda" else "cpu"),
             "torch": torch.__version__, "jax": jax.__version__,
             "threads": torch.get_num_threads(), "tf32": False,
             "retained_host_memory": RETAINED_HOST_MEMORY, "configs": []}
  for name in args.configs.split(","):
    config = importlib.import_module(f"configs.{name}").get_config()
    config.batch_size = args.batch
    shape = datasets.image_shape(config)
    torch_steps = {}
    for form in torch_forms:
      torch_model, torch_steps[form] = torch_step_fn(
          config, shape, args.device, compiled=form == "compiled")
    count = sum(p.numel() for p in torch_model.parameters())
    ours_count = jax_parameter_count(config, shape)
    assert count == ours_count, (name, count, ours_count)
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(args.batch,) + shape).astype(np.float32)
    batch = jax.device_put({"image": images,
                            "label": np.zeros(args.batch, np.int32)})
    forms = args.forms.split(",")
    steps, states = {}, {}
    for form in forms:
      forms_part, _, matmul = form.partition("@")
      down, up = (forms_part.split("/") if "/" in forms_part
                  else (forms_part, forms_part))
      variant = config.copy_and_resolve_references()
      variant.model.downsample, variant.model.upsample = down, up
      variant.model.matmul = matmul or "auto"
      model = experiment.create_model(variant, shape)
      states[form] = experiment.create_train_state(variant, model)
      steps[form] = jax.jit(functools.partial(
          train.train_step, model=model, config=variant), donate_argnums=0)
      states[form], metrics = steps[form](states[form], batch)  # compile
      jax.block_until_ready(metrics)
    torch_images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()
                                    ).to(args.device)
    for torch_step in torch_steps.values():
      torch_step(torch_images)  # compiles the compiled form
      torch_step(torch_images)
      _sync(args.device)
    ours = {form: [] for form in forms}
    theirs_by_form = {form: [] for form in torch_forms}
    for _ in range(args.rounds):
      for form in forms:
        start = time.perf_counter()
        for _ in range(args.steps):
          states[form], metrics = steps[form](states[form], batch)
        jax.block_until_ready(metrics)
        ours[form].append(args.batch * args.steps /
                          (time.perf_counter() - start))
      for form, torch_step in torch_steps.items():
        _sync(args.device)
        start = time.perf_counter()
        for _ in range(args.steps):
          torch_step(torch_images)
        _sync(args.device)
        theirs_by_form[form].append(args.batch * args.steps /
                                    (time.perf_counter() - start))
    theirs = theirs_by_form[torch_forms[0]]
    jax_peak, torch_peak = peaks(device=args.device)
    useful = flops.train_step_flops(config, shape)
    med = statistics.median
    row = {"config": name, "parameters": count, "useful_flops_per_step": useful,
           "ours_images_per_second": ours[forms[0]],
           "torch_images_per_second": theirs,
           "jax_matmul_peak": jax_peak, "torch_matmul_peak": torch_peak,
           "ratio_median": med(ours[forms[0]]) / med(theirs),
           "ratios": [a / b for a, b in zip(ours[forms[0]], theirs)],
           "forms": {form: {"images_per_second": rates,
                            "ratio_median": med(rates) / med(theirs),
                            "ratios": [a / b for a, b in zip(rates, theirs)]}
                     for form, rates in ours.items()},
           "torch_forms": {
               form: {"images_per_second": rates,
                      "ours_over_torch_median": med(ours[forms[0]]) / med(rates),
                      "ratios": [a / b for a, b in zip(ours[forms[0]], rates)]}
               for form, rates in theirs_by_form.items()}}
    results["configs"].append(row)
    print(f"{name}: {count:,} parameters both; useful {useful / 1e9:.1f} "
          f"GFLOP/step; matmul peak jax {jax_peak / 1e9:.0f} / torch "
          f"{torch_peak / 1e9:.0f} GFLOP/s")
    lines = [(f"ours {form}", rates, jax_peak) for form, rates in ours.items()]
    lines += [(f"pytorch {form}", rates, torch_peak)
              for form, rates in theirs_by_form.items()]
    for label, rates, peak in lines:
      print(f"  {label:>14}: {med(rates):7.1f} images/s [{min(rates):.1f}-"
            f"{max(rates):.1f}], useful {med(rates) / args.batch * useful / 1e9:.0f}"
            f" GFLOP/s = {med(rates) / args.batch * useful / peak:.0%} of its "
            "matmul peak")
    for form, entry in row["forms"].items():
      print(f"  ours {form} / pytorch {torch_forms[0]}: "
            f"{entry['ratio_median']:.2f}x (per round "
            f"{min(entry['ratios']):.2f}-{max(entry['ratios']):.2f})",
            flush=True)
    for form, entry in list(row["torch_forms"].items())[1:]:
      print(f"  ours {forms[0]} / pytorch {form}: "
            f"{entry['ours_over_torch_median']:.2f}x (per round "
            f"{min(entry['ratios']):.2f}-{max(entry['ratios']):.2f})",
            flush=True)
  write_json(args.out, results)


if __name__ == "__main__":
  main()
