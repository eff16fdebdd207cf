"""Packs what the lent GPU machine lacks into one folder that git ignores.

    python bench/gpu_pack.py [--celeba_dir ../shared/data/celeba] \
        [--out .gpu_pack] [--quality 75] [--max_mb 40]

Only the working tree travels to the device machine (64 MiB with everything
the run carries), and its Python image has JAX but neither ml_collections
nor TensorFlow. This writes, into ``--out``:

- ``celeba/``: the CelebA subset in its official Align&Cropped layout, every
  JPEG at half scale (89x109; the loader crops relative to each image's own
  size, so the geometry is kept) re-encoded at ``--quality``, and the
  attribute, partition and identity lists cut to the subset's rows (the
  loader keeps only rows whose image exists, so the cut changes nothing it
  reads). Refused if the folder would exceed ``--max_mb``.
- ``wheels/``: the wheels of the pure-Python packages the image lacks
  (``CARRIED``), at the versions installed here, checked to install with
  ``pip install --no-index --no-deps --target`` and to import from there.
- ``MANIFEST.json``: sizes, counts, versions.

``bench/gpu_run.sh`` reads this folder on the device (name it in ``carry``).
"""

import argparse
import importlib.metadata
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Distributions main.py needs that the device image (KINDS.md's package list
# for nvidia-h200) does not have, with the module each provides. Everything
# else main.py imports there (jax, flax, optax, orbax-checkpoint, absl-py,
# numpy, pillow, scikit-learn, matplotlib, tensorboard, pyyaml) is in it.
CARRIED = {"ml-collections": "ml_collections"}
HALF_SIZE = (89, 109)  # the official 178x218 at half scale
CELEBA_LISTS = ("list_attr_celeba.txt", "list_eval_partition.txt",
                "identity_CelebA.txt")


class PackError(RuntimeError):
  """The pack cannot be made as asked; the message says the fix."""


def _write_atomically(path, data: bytes):
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def half_scale_jpeg(path: str, quality: int) -> bytes:
  """The image at 89x109 (bilinear from the full size; as it is when it is
  already half scale), as JPEG bytes of ``quality``."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as image:
    image = image.convert("RGB")
    if image.size != HALF_SIZE:
      image = image.resize(HALF_SIZE, Image.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
  return out.getvalue()


def _cut_list(source: str, keep: set, header_lines: int) -> bytes:
  """The list file with only the rows naming kept images; the attribute
  file's count line (its first) says the new count."""
  with open(source, "rb") as f:
    lines = f.read().splitlines(keepends=True)
  header, rows = lines[:header_lines], lines[header_lines:]
  kept = [r for r in rows if r.split(maxsplit=1)[:1] and
          r.split(maxsplit=1)[0].decode() in keep]
  if header_lines:
    ending = b"\r\n" if header[0].endswith(b"\r\n") else b"\n"
    header = [str(len(kept)).encode() + ending] + header[1:]
  return b"".join(header + kept)


def pack_celeba(source: str, target: str, quality: int, max_mb: float):
  image_dir = os.path.join(source, "img_align_celeba")
  if not os.path.isdir(image_dir):
    raise PackError(f"{image_dir!r} does not exist; pass --celeba_dir=FOLDER "
                    "with the official Align&Cropped layout.")
  names = sorted(n for n in os.listdir(image_dir)
                 if n.lower().endswith(".jpg"))
  out_dir = os.path.join(target, "img_align_celeba")
  os.makedirs(out_dir, exist_ok=True)
  total = 0
  for i, name in enumerate(names):
    data = half_scale_jpeg(os.path.join(image_dir, name), quality)
    _write_atomically(os.path.join(out_dir, name), data)
    total += len(data)
    if (i + 1) % 5000 == 0:
      print(f"  {i + 1}/{len(names)} images, {total / 1e6:.1f} MB",
            flush=True)
  keep = set(names)
  for list_name, header in zip(CELEBA_LISTS, (2, 0, 0)):
    path = os.path.join(source, list_name)
    if os.path.exists(path):
      data = _cut_list(path, keep, header)
      _write_atomically(os.path.join(target, list_name), data)
      total += len(data)
  if total > max_mb * 1e6:
    raise PackError(f"the packed CelebA is {total / 1e6:.1f} MB, over "
                    f"--max_mb={max_mb:g}; pass a lower --quality (now "
                    f"{quality}).")
  return {"images": len(names), "bytes": total, "quality": quality,
          "size": list(HALF_SIZE)}


def pack_wheels(target: str):
  """Downloads the ``CARRIED`` wheels (pure Python, so one wheel serves the
  device's Python 3.12) and checks they install offline and import."""
  os.makedirs(target, exist_ok=True)
  versions = {}
  for dist, module in CARRIED.items():
    version = importlib.metadata.version(dist)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q",
                    "--no-deps", "--only-binary=:all:", "-d", target,
                    f"{dist}=={version}"], check=True)
    versions[dist] = version
  wheels = sorted(os.path.join(target, w) for w in os.listdir(target)
                  if w.endswith(".whl"))
  with tempfile.TemporaryDirectory() as site:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "--no-index", "--no-deps", "--no-compile", "--target",
                    site, *wheels], check=True)
    for module in CARRIED.values():
      found = subprocess.run(
          [sys.executable, "-S", "-c",
           f"import sys; sys.path.insert(0, {site!r}); import importlib.util"
           f" as u; s = u.find_spec({module!r}); print(s.origin)"],
          check=True, capture_output=True, text=True).stdout.strip()
      if not found.startswith(site):
        raise PackError(f"{module} did not import from the carried wheels "
                        f"({found}).")
  return {"wheels": [os.path.basename(w) for w in wheels],
          "versions": versions}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--celeba_dir", default=os.path.join(
      ROOT, "..", "shared", "data", "celeba"))
  parser.add_argument("--out", default=os.path.join(ROOT, ".gpu_pack"))
  parser.add_argument("--quality", type=int, default=75)
  parser.add_argument("--max_mb", type=float, default=40.0)
  parser.add_argument("--skip_celeba", action="store_true",
                      help="wheels only")
  args = parser.parse_args(argv)
  if not 1 <= args.quality <= 95:
    raise SystemExit(f"--quality={args.quality}: use 1-95 (JPEG quality).")
  # Built beside the target and swapped in whole: a failed pack leaves the
  # previous one as it was.
  staging = f"{args.out.rstrip(os.sep)}.staging-{os.getpid()}"
  shutil.rmtree(staging, ignore_errors=True)
  try:
    manifest = {"wheels": pack_wheels(os.path.join(staging, "wheels"))}
    if not args.skip_celeba:
      print(f"packing CelebA from {args.celeba_dir} ...", flush=True)
      manifest["celeba"] = pack_celeba(args.celeba_dir,
                                       os.path.join(staging, "celeba"),
                                       args.quality, args.max_mb)
    _write_atomically(os.path.join(staging, "MANIFEST.json"),
                      json.dumps(manifest, indent=1).encode())
    previous = f"{args.out.rstrip(os.sep)}.previous-{os.getpid()}"
    if os.path.exists(args.out):
      os.replace(args.out, previous)
    os.replace(staging, args.out)
    shutil.rmtree(previous, ignore_errors=True)
  except PackError as e:
    shutil.rmtree(staging, ignore_errors=True)
    raise SystemExit(f"gpu_pack: {e}") from None
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  size = sum(os.path.getsize(os.path.join(d, f))
             for d, _, files in os.walk(args.out) for f in files)
  print(f"wrote {args.out}: {size / 2**20:.1f} MiB "
        f"({json.dumps({k: v for k, v in manifest.items()})[:300]})")
  tree = tracked_bytes()
  if tree is not None:
    total = (tree + size) / 2**20
    print(f"with the working tree ({tree / 2**20:.1f} MiB tracked) a device "
          f"call carries {total:.1f} MiB of its {DEVICE_LIMIT_MIB} MiB"
          + ("" if total <= DEVICE_LIMIT_MIB else
             ": over; lower --quality or remove untracked files"))


DEVICE_LIMIT_MIB = 64  # what one device call carries, carried paths included


def tracked_bytes():
  """Bytes of the files git tracks in this checkout (None without git)."""
  try:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.split(b"\0")
  except (OSError, subprocess.CalledProcessError):
    return None
  return sum(os.path.getsize(os.path.join(ROOT, os.fsdecode(n)))
             for n in names if n and os.path.isfile(
                 os.path.join(ROOT, os.fsdecode(n))))


if __name__ == "__main__":
  main()
