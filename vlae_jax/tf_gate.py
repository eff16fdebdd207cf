"""The only way vlae_jax imports TensorFlow and TFDS (read TFDS builders,
nothing else): TensorFlow must never take the GPU from JAX, and its
start-up chatter stays off the console. Training from local files never
calls it.
"""

from __future__ import annotations

import importlib
import os
import sys


def import_tensorflow():
  """``tensorflow``, with every GPU hidden from it (JAX owns the GPU).

  The hiding happens before TensorFlow creates any device; every TensorFlow
  or TFDS import in vlae_jax goes through here. TensorFlow's C++ info and
  warning lines (oneDNN notices) are silenced unless the user set
  ``TF_CPP_MIN_LOG_LEVEL`` themselves.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # TensorFlow only gathers batches and writes summaries here: its oneDNN
  # kernels buy nothing, and their notice escapes the redirect below once
  # JAX has started absl's C++ logging.
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  if "tensorflow" not in sys.modules and \
      os.environ["TF_CPP_MIN_LOG_LEVEL"] not in ("0", "1"):
    # TensorFlow >= 2.20 logs its start-up notices through C++ absl, which
    # ignores TF_CPP_MIN_LOG_LEVEL: keep them off stderr during the import
    # (errors still raise as Python exceptions).
    stderr_fd = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
      sys.stderr.flush()
      os.dup2(devnull, 2)
      importlib.import_module("tensorflow")  # bound below, once imported
    finally:
      os.dup2(stderr_fd, 2)
      os.close(stderr_fd)
      os.close(devnull)
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # devices already initialised by the caller's own TF
    if tf.config.get_visible_devices("GPU"):
      raise
  return tf


def import_tfds():
  """``tensorflow_datasets``, imported after ``import_tensorflow``."""
  import_tensorflow()
  import tensorflow_datasets as tfds
  # TFDS logs a warning for every unprepared version folder it looks at.
  import logging as std_logging
  std_logging.getLogger("absl").addFilter(_quiet_tfds_lookup)
  return tfds


def _quiet_tfds_lookup(record) -> bool:
  return "has no dataset_info.json" not in record.getMessage()
