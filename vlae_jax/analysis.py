"""What each rung learned: traversals, samples, reconstructions.

Everything here reads a trained workdir (``config.json`` + newest checkpoint)
and writes PNG/GIF files under ``<workdir>/figures/`` (or ``out_dir``).
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

import jax
import numpy as np

from vlae_jax import inference, plotting
from vlae_jax import workdir as workdirs
from vlae_jax.experiment import load_experiment
from vlae_jax.inference import (decode_images, encode_means, prior_codes,
                                reconstruct, variables_of)


class AnalysisError(ValueError):
  """A bad analysis request (rung, index, radius); the message says the fix."""


def figures_dir(workdir: str) -> str:
  """Where the figure modes write unless given ``out_dir``."""
  return workdirs.output_dir(workdir, "traverse")


def _tile_codes(base: Sequence[np.ndarray], count: int) -> List[np.ndarray]:
  """Repeats one code per rung (``[1, dim]``) ``count`` times."""
  return [np.repeat(np.asarray(b), count, axis=0) for b in base]


def sweep_codes(base, rung: int, radius: float, steps: int):
  """Codes that sweep ``rung`` over [-radius, radius], the other rungs = base.

  A 2-D rung sweeps a ``steps x steps`` grid of both dimensions; a wider rung
  sweeps one dimension per row (the rung's other dimensions at 0). Returns
  ``(codes [rows * steps] per rung, rows)``.
  """
  dim = base[rung].shape[1]
  values = np.linspace(-radius, radius, steps, dtype=np.float32)
  if dim == 2:
    grid = np.stack(np.meshgrid(values, values, indexing="ij"), -1)
    points = grid.reshape(-1, 2)[:, ::-1]  # rows vary dim 1, columns dim 0
    rows = steps
  else:
    points = np.zeros((dim * steps, dim), np.float32)
    for d in range(dim):
      points[d * steps:(d + 1) * steps, d] = values
    rows = dim
  codes = _tile_codes(base, len(points))
  codes[rung] = points
  return codes, rows


def dimension_codes(base, rung: int, radius: float, steps: int):
  """One row per dimension of ``rung``: that dimension sweeps, all else = base."""
  dim = base[rung].shape[1]
  values = np.linspace(-radius, radius, steps, dtype=np.float32)
  codes = _tile_codes(base, dim * steps)
  points = np.repeat(np.asarray(base[rung]), dim * steps, axis=0)
  for d in range(dim):
    points[d * steps:(d + 1) * steps, d] = values
  codes[rung] = points
  return codes, dim


def conditional_codes(model, key, rung: int, rows: int, cols: int):
  """Row r fixes the other rungs at draw r; column c resamples ``rung``."""
  others = prior_codes(model, jax.random.fold_in(key, 1), rows)
  resampled = prior_codes(model, jax.random.fold_in(key, 2), cols)[rung]
  codes = [np.repeat(np.asarray(o), cols, axis=0) for o in others]
  codes[rung] = np.tile(np.asarray(resampled), (rows, 1))
  return codes


def check_rung(model, rung: Optional[int]):
  if rung is not None and not 0 <= rung < model.num_rungs:
    raise AnalysisError(f"rung {rung} is out of range; this model has rungs "
                     f"0..{model.num_rungs - 1}.")


def traverse(workdir: str, radius: float = 3.0, steps: int = 9, seed: int = 0,
             gif: bool = False, rungs: Optional[Sequence[int]] = None,
             dims: Optional[Sequence[int]] = None,
             out_dir: Optional[str] = None,
             checkpoint_step: Optional[int] = None) -> List[str]:
  """The paper's Fig. 2/3 and more, per rung; returns the files written.

  For each rung l, under ``<workdir>/figures/``:
  - ``traverse_rung{l}.png``: rung l sweeps [-radius, radius] (2-D grid for a
    2-D rung, one row per dimension otherwise), other rungs one random draw;
  - ``conditional_rung{l}.png``: each row fixes the other rungs at a random
    draw, each column resamples rung l from the prior (the reference code's
    conditional samples);
  - ``dims_rung{l}.png``: one row per dimension, that dimension sweeping and
    everything else at a random draw;
  - with ``gif``, ``traverse_rung{l}.gif``: every dimension's sweep as frames.
  ``dims`` restricts the per-dimension rows (``dims_rung``, GIF) to those
  dimensions.
  """
  config, model, state = load_experiment(workdir, checkpoint_step)
  # Rungs without a code (the single-code baseline's) have nothing to sweep.
  rungs = ([l for l in range(model.num_rungs) if model.latent_dims[l]]
           if rungs is None else list(rungs))
  for rung in rungs:
    check_rung(model, rung)
    if not model.latent_dims[rung]:
      raise AnalysisError(f"rung {rung} has no code (latent_dims "
                          f"{list(model.latent_dims)}); choose a rung with "
                          "one.")
    for d in dims or ():
      if not 0 <= d < model.latent_dims[rung]:
        raise AnalysisError(
            f"dimension {d} is out of range; rung {rung} has dimensions "
            f"0..{model.latent_dims[rung] - 1}.")
  if not radius > 0 or steps < 2:
    raise AnalysisError(f"need radius > 0 and steps >= 2, got radius={radius}, "
                     f"steps={steps}.")
  variables = variables_of(state)
  key = jax.random.PRNGKey(seed)
  base = prior_codes(model, key, 1)
  figures = out_dir or figures_dir(workdir)
  written = []
  for rung in rungs:
    codes, rows = sweep_codes(base, rung, radius, steps)
    images = decode_images(model, variables, codes)
    written.append(plotting.save_png(
        os.path.join(figures, f"traverse_rung{rung}.png"),
        plotting.image_grid(images.reshape((rows, steps) + images.shape[1:]))))
    codes = conditional_codes(model, jax.random.fold_in(key, rung), rung,
                              steps, steps)
    images = decode_images(model, variables, codes)
    written.append(plotting.save_png(
        os.path.join(figures, f"conditional_rung{rung}.png"),
        plotting.image_grid(images.reshape((steps, steps) + images.shape[1:]))))
    codes, rows = dimension_codes(base, rung, radius, steps)
    images = decode_images(model, variables, codes)
    per_dim = images.reshape((rows, steps) + images.shape[1:])
    if dims:
      per_dim = per_dim[list(dims)]
    written.append(plotting.save_png(
        os.path.join(figures, f"dims_rung{rung}.png"),
        plotting.image_grid(per_dim)))
    if gif:
      # Frame t shows every dimension of the rung at sweep position t.
      frames = [plotting.image_grid(per_dim[:, t][None])
                for t in range(steps)]
      written.append(plotting.save_gif(
          os.path.join(figures, f"traverse_rung{rung}.gif"), frames))
  del config
  return written


def sample(workdir: str, rows: int = 8, cols: int = 8, seed: int = 0,
           out_dir: Optional[str] = None,
           checkpoint_step: Optional[int] = None) -> List[str]:
  """``figures/samples.png``: a rows x cols grid decoded from prior draws."""
  _, model, state = load_experiment(workdir, checkpoint_step)
  if rows < 1 or cols < 1:
    raise AnalysisError(f"need rows, cols >= 1, got {rows}x{cols}.")
  codes = prior_codes(model, jax.random.PRNGKey(seed), rows * cols)
  images = decode_images(model, variables_of(state), codes)
  return [plotting.save_png(
      os.path.join(out_dir or figures_dir(workdir), "samples.png"),
      plotting.image_grid(images.reshape((rows, cols) + images.shape[1:])))]


def reconstruct_figure(workdir: str, count: int = 16, start: int = 0,
                       out_dir: Optional[str] = None,
                       checkpoint_step: Optional[int] = None) -> List[str]:
  """``figures/reconstructions.png``: test images (top) over reconstructions.

  The images are ``count`` consecutive test images from index ``start``,
  reconstructed from their posterior means.
  """
  from vlae_jax import datasets
  config, model, state = load_experiment(workdir, checkpoint_step)
  test = datasets.load_split(config, "test")
  if count < 1 or not 0 <= start or start + count > len(test):
    raise AnalysisError(f"images {start}..{start + count - 1} are outside the "
                     f"test split (0..{len(test) - 1}).")
  images = test.batch(np.arange(start, start + count))["image"]
  recon = reconstruct(model, variables_of(state), images)
  return [plotting.save_png(
      os.path.join(out_dir or figures_dir(workdir), "reconstructions.png"),
      plotting.image_grid(np.stack([images, recon])))]


def parse_rungs(model, rungs: Optional[Sequence[int]]) -> List[int]:
  """All rungs for None, else the given ones after a range check."""
  if rungs is None:
    return list(range(model.num_rungs))
  for rung in rungs:
    check_rung(model, rung)
  return list(rungs)


def _test_images(config, indices: Sequence[int]):
  from vlae_jax import datasets
  test = datasets.load_split(config, "test")
  for i in indices:
    if not 0 <= i < len(test):
      raise AnalysisError(f"image index {i} is outside the test split "
                          f"(0..{len(test) - 1}).")
  return test, test.batch(np.asarray(indices))["image"]


def interpolation_codes(start, end, rungs: Sequence[int], steps: int):
  """Codes moving from ``start`` to ``end`` (per rung ``[1, dim]``) in the
  given rungs only; the other rungs stay at ``start``. ``[steps, dim]`` each."""
  t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
  codes = []
  for l, (a, b) in enumerate(zip(start, end)):
    a, b = np.asarray(a), np.asarray(b)
    codes.append((1 - t) * a + t * b if l in rungs else np.repeat(a, steps, 0))
  return codes


def interpolate(workdir: str, index_a: int, index_b: int, steps: int = 9,
                rungs: Optional[Sequence[int]] = None,
                out_dir: Optional[str] = None,
                checkpoint_step: Optional[int] = None) -> List[str]:
  """``figures/interpolate_{a}_{b}.png``: row per setting, image a -> b.

  The first row moves every chosen rung at once; then one row per chosen rung
  moving that rung alone, so the rows show what each rung changes.
  """
  config, model, state = load_experiment(workdir, checkpoint_step)
  rungs = parse_rungs(model, rungs)
  if steps < 2:
    raise AnalysisError(f"need steps >= 2, got {steps}.")
  _, images = _test_images(config, [index_a, index_b])
  variables = variables_of(state)
  means = encode_means(model, variables, images)
  start = [m[:1] for m in means]
  end = [m[1:2] for m in means]
  settings = [rungs] + ([[r] for r in rungs] if len(rungs) > 1 else [])
  rows = [decode_images(model, variables,
                        interpolation_codes(start, end, s, steps))
          for s in settings]
  return [plotting.save_png(
      os.path.join(out_dir or figures_dir(workdir),
                   f"interpolate_{index_a}_{index_b}.png"),
      plotting.image_grid(np.stack(rows)))]


def arithmetic(workdir: str, triples: Sequence[Sequence[int]],
               rungs: Optional[Sequence[int]] = None,
               out_dir: Optional[str] = None,
               checkpoint_step: Optional[int] = None) -> List[str]:
  """The paper's Fig. 4: rows of a, b, c and decode(z_c + z_a - z_b) in
  ``rungs`` (``inference.arithmetic_codes``: z_c on the other rungs).

  ``triples`` are test-image indices ``(a, b, c)``; codes are posterior means.
  Written to ``figures/arithmetic.png``.
  """
  config, model, state = load_experiment(workdir, checkpoint_step)
  rungs = parse_rungs(model, rungs)
  flat = [i for t in triples for i in t]
  if not triples or any(len(t) != 3 for t in triples):
    raise AnalysisError(f"give image indices in triples a,b,c; got {flat}.")
  _, images = _test_images(config, flat)
  variables = variables_of(state)
  means = encode_means(model, variables, images)
  z_a, z_b, z_c = ([m[k::3] for m in means] for k in range(3))
  result = decode_images(model, variables,
                         inference.arithmetic_codes(z_a, z_b, z_c, rungs))
  grid = np.concatenate([images.reshape((len(triples), 3) + images.shape[1:]),
                         result[:, None]], axis=1)
  return [plotting.save_png(
      os.path.join(out_dir or figures_dir(workdir), "arithmetic.png"),
      plotting.image_grid(grid))]


def attribute_vectors(codes: Sequence[np.ndarray], present: np.ndarray
                      ) -> List[np.ndarray]:
  """Per rung: mean code of rows with the attribute minus rows without.

  ``codes`` per rung ``[n, dim]``; ``present`` ``[n]`` booleans. Returns per
  rung ``[dim]``.
  """
  present = np.asarray(present, bool)
  if present.all() or not present.any():
    raise AnalysisError("the attribute is present in all or none of the "
                        "images; its vector is undefined.")
  return [c[present].mean(0) - c[~present].mean(0) for c in codes]


def edit_attribute(workdir: str, attribute: str, indices: Sequence[int],
                   strength: float = 1.5, rungs: Optional[Sequence[int]] = None,
                   max_train_images: int = 5000,
                   out_dir: Optional[str] = None,
                   checkpoint_step: Optional[int] = None) -> List[str]:
  """Adds ``strength`` x the attribute vector to chosen test faces.

  The attribute vector of each rung is the mean posterior code of training
  images with the attribute minus those without (over at most
  ``max_train_images``). Writes ``figures/edit_{attribute}.png``: the
  originals, their reconstructions, and the edits (in ``rungs``: one row with
  all of them, then one row per rung).
  """
  from vlae_jax import datasets
  config, model, state = load_experiment(workdir, checkpoint_step)
  rungs = parse_rungs(model, rungs)
  train_split = datasets.load_split(config, "train")
  if train_split.label_key != "attributes":
    raise AnalysisError(f"dataset {config.dataset!r} has no attributes; "
                        "attribute editing needs CelebA, or a folder whose "
                        "labels CSV has attribute columns (configs/folder.py).")
  if attribute not in train_split.label_names:
    raise AnalysisError(f"unknown attribute {attribute!r}; choose one of "
                        f"{', '.join(train_split.label_names)}.")
  _, images = _test_images(config, indices)
  variables = variables_of(state)
  rows = np.arange(min(len(train_split), max_train_images))
  train_codes = encode_means(model, variables,
                             train_split.batch(rows)["image"])
  present = train_split.labels[rows, train_split.label_names.index(attribute)]
  vectors = attribute_vectors(train_codes, present)
  means = encode_means(model, variables, images)
  grid = [images, decode_images(model, variables, means)]
  settings = [rungs] + ([[r] for r in rungs] if len(rungs) > 1 else [])
  for chosen in settings:
    edited = [m + strength * v if l in chosen else m
              for l, (m, v) in enumerate(zip(means, vectors))]
    grid.append(decode_images(model, variables, edited))
  return [plotting.save_png(
      os.path.join(out_dir or figures_dir(workdir), f"edit_{attribute}.png"),
      plotting.image_grid(np.stack(grid)))]
