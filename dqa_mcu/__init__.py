"""dqa-mcu: CNNs to fixed-point C for Cortex-M with DQA activations (arXiv 2412.09687)."""

__version__ = "0.1.0"
