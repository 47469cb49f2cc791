"""Backdoor defenses: pruning, fine-tuning, fine-pruning, adversarial neuron pruning."""
