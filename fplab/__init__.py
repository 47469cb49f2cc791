"""fplab: backdoor attacks, backdoor defenses and adversarial robustness, for teaching.

The library behind the fplab course (a Jupyter Book). Modules, one concept each:

- :mod:`fplab.paths`       data root and cache folder (``FPLAB_DATA``, ``FPLAB_CACHE``)
- :mod:`fplab.data`        dataset registry, splits, profiles, checksums
- :mod:`fplab.triggers`    patch / blend / noise / sinusoidal triggers applied to batches
- :mod:`fplab.poison`      all-to-one, all-to-all, untargeted and clean-label poisoning
- :mod:`fplab.models`      the chapters' networks and their last convolutional layer
- :mod:`fplab.train`       training, fine-tuning, prediction
- :mod:`fplab.metrics`     clean accuracy, attack success rate, untargeted effectiveness
- :mod:`fplab.zoo`         recipe -> trained model, cached by hash, verified by SHA-256
- :mod:`fplab.activations` per-channel activation statistics through forward hooks
- :mod:`fplab.attacks`     BadNets recipes, transfer learning, pruning-aware, PGD, CLB
- :mod:`fplab.defenses`    pruning, fine-tuning, fine-pruning, adversarial neuron pruning
- :mod:`fplab.casestudies`, :mod:`fplab.anp_benchmark`  the recipes of chapters 2-5
- :mod:`fplab.plots`, :mod:`fplab.widgets`, :mod:`fplab.cli` (``python -m fplab``)
"""

__version__ = "0.1.0"
