"""Attacks beyond plain data poisoning: pruning-aware, transfer learning, adversarial examples."""
