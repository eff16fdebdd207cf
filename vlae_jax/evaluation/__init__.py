"""What each rung learned, as numbers: ``evaluate(workdir)``.

Writes ``<workdir>/eval/metrics.json``, a readable ``metrics.txt`` and
heatmaps (``eval/validation/`` for ``split="validation"``). The parts, one
module each:
- ``context``: the run, the split, posterior means (computed once);
- ``domains``: per domain (digits, faces, images) its pixel factors, the
  paper's claims, attributes and causes;
- ``encoder``: reconstruction, per-rung MMD^2 against N(0, I), active units
  (posterior-mean variance > 0.01), linear probes, the rung x factor table
  with its controls (pixel PCA holds the pixels, random codes nothing,
  factor + noise), claims judged on the codes;
- ``quality``: KID of prior samples and of reconstructions in a classifier's
  features trained here, and the per-rung resampling shift;
- ``identity``: a same-person verifier for CelebA's identity claim;
- ``decoder``: the claims where the figure acts: resample / sweep one rung,
  decode, measure (``vlae_jax.intervention``);
- ``arithmetic``: face arithmetic scored and drawn;
- ``report``: the files.
A part the data cannot support is one ``skipped:`` line saying why.
"""

from __future__ import annotations

from typing import List, Optional

from vlae_jax.evaluation import (arithmetic, context, decoder, encoder,
                                 identity, quality, report)
from vlae_jax.evaluation.context import SPLITS
from vlae_jax.evaluation.encoder import active_units, probe_score
from vlae_jax.evaluation.identity import VERIFIER_MIN_FACES, identity_verifier

__all__ = ["SPLITS", "VERIFIER_MIN_FACES", "active_units", "evaluate",
           "identity_verifier", "probe_score"]


def evaluate(workdir: str, probe_train_size: int = 10000, seed: int = 0,
             out_dir: Optional[str] = None, classifier_steps: int = 1000,
             quality_images: int = 5000, decoder_images: int = 500,
             decoder_draws: int = 8, arithmetic_triples: int = 200,
             split: str = "test",
             checkpoint_step: Optional[int] = None) -> List[str]:
  """Measures the run in ``workdir`` on ``split`` and writes the report;
  returns the paths written.

  ``split``: "test" (reported results) or "validation" (choosing recipes,
  budgets and factor definitions). ``classifier_steps=0`` skips everything
  that needs the trained classifier (KID, the classifier factors of the
  decoder side, face arithmetic). ``checkpoint_step``: measure that saved
  step instead of the newest.
  """
  run = context.load(workdir, split, probe_train_size, seed, checkpoint_step)
  metrics = {"workdir": workdir, "step": int(run.state.step),
             "dataset": run.config.dataset, "split": split,
             "test_images": len(run.test), "skipped": run.skipped}
  metrics.update(encoder.measure(run))
  classify = embed = None
  if classifier_steps > 0 and (run.has_classes or run.has_attributes):
    classify = quality.measure(run, classifier_steps, quality_images,
                               metrics)
    embed = identity.measure(run, classifier_steps, metrics)
  metrics.update(decoder.measure(run, classify, embed, decoder_images,
                                 decoder_draws))
  metrics["caveats"] = run.caveats
  if classify is not None and run.has_attributes:
    metrics["arithmetic"] = arithmetic.measure(run, classify,
                                               arithmetic_triples)
  return report.write(run, metrics, out_dir)
