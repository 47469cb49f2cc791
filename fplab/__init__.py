"""fplab: backdoor attacks, backdoor defenses and adversarial robustness, for teaching.

The library behind the fplab course (a Jupyter Book), in three layers; imports point down only.

The library (imports nothing above it), one concept per module:

- :mod:`fplab.numerics`    portable CPU numerics for the test suite (``FPLAB_PORTABLE``)
- :mod:`fplab.paths`       data root and cache folder (``FPLAB_DATA``, ``FPLAB_CACHE``)
- :mod:`fplab.errors`      the errors fplab raises and the argument checks that name the parameter
- :mod:`fplab.store`       atomic, SHA-256-verified, weights-only storage; result fingerprints
- :mod:`fplab.data`        dataset registry, splits, profiles, checksums
- :mod:`fplab.triggers`    patch / blend / noise / sinusoidal / warping triggers applied to batches
- :mod:`fplab.poison`      all-to-one, all-to-all, untargeted and clean-label poisoning
- :mod:`fplab.models`, :mod:`fplab.resnet`  the chapters' networks and their last conv layer
- :mod:`fplab.train`       training, fine-tuning, prediction
- :mod:`fplab.metrics`     clean accuracy, attack success rate, untargeted effectiveness
- :mod:`fplab.zoo`         recipe -> trained model, cached by hash, verified by SHA-256
- :mod:`fplab.activations` per-channel activation statistics through forward hooks
- :mod:`fplab.plots`       figures every chapter uses (image grids, bars, curves, heatmaps)
- :mod:`fplab.attacks`     BadNets recipes, transfer learning, pruning-aware, PGD, CLB
- :mod:`fplab.defenses`    pruning, fine-tuning, fine-pruning, adversarial neuron pruning

Above it, :mod:`fplab.chapters`: one module per chapter (its recipes, figures, tables, explorers).

On top: :mod:`fplab.runner` (executes notebooks), :mod:`fplab.benchmark` (``python -m fplab
benchmark``: notebook timings and the hot loops' micro-benchmarks) and :mod:`fplab.cli`.
"""

__version__ = "0.1.0"

from . import numerics as _numerics

_numerics.apply()  # FPLAB_PORTABLE=1: the same weights on any x86-64 CPU (fplab.numerics)
