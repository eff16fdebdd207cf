"""Your own images: every JPEG / PNG under a folder, or a TFDS image data set.

    python main.py --config=configs/folder.py --config.data_dir=~/photos --workdir=runs/photos
    python main.py --mode=traverse --workdir=runs/photos
    python main.py --config=configs/folder.py --config.dataset=tfds:cifar10 \
        --config.image_size=32 --workdir=runs/cifar10

The fields that describe the data (all also in configs/default.py):
- dataset: "folder", or "tfds:NAME" for a data set TFDS knows (its "image"
  feature, and "label" where it has one; downloaded on first use).
- data_dir: the folder. Every .jpg / .jpeg / .png under it, recursively
  (hidden files and folders skipped); grayscale, RGBA (laid over white) and
  palette images are converted.
- image_size: each image's centred square (the shorter side) is resized to
  image_size x image_size; smaller images are enlarged, with a warning.
- channels: 3 (RGB) or 1 (grayscale; a colour image is then an error naming
  it, so colour is never dropped silently).
- the split: when data_dir holds both train/ and test/ subfolders, they are
  the splits; otherwise a file is in the test split when a hash of its path
  (relative to data_dir) falls below test_fraction, so the split is the
  same on every machine and adding images never moves the others.
- labels_file: optional CSV (default: labels.csv in data_dir when present),
  header "file,label" (one class per image, any names) or
  "file,attr1,attr2,..." (binary attributes: 1/0, 1/-1 or true/false);
  "file" is the path relative to data_dir. Every image needs a row. Labels
  feed evaluate's probes and classifier (KID) and, for attributes, the
  attribute edits and arithmetic; without them evaluate reports what needs
  none (reconstruction, per-rung MMD, active units, what resampling each
  rung changes in the decoded pixels).
Decoded once, on every core, into the decode cache (cache_dir), keyed by the
files' names, sizes and times: change a file and it is decoded again.

The network is configs/celeba_small.py's ladder (4 rungs of 7, 10, 10, 10
dims; conv layers need image_size divisible by 16) with its schedule (rung
0 alone first, rung 1 last), trained until num_train_steps or
max_train_minutes.
"""

from configs import celeba_small


def get_config():
  config = celeba_small.get_config()
  config.name = "folder"
  config.dataset = "folder"
  config.data_dir = ""
  config.image_size = 64
  config.channels = 3
  config.test_fraction = 0.1
  config.labels_file = ""
  # celeba_small's 24,000 steps are where its CelebA claims were measured;
  # other images get no such budget.
  config.num_train_steps = 100000
  return config
