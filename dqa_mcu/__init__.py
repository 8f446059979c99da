"""dqa-mcu: CNNs to fixed-point C for Cortex-M with DQA activations (arXiv 2412.09687).

The Python API is ``dqa_mcu.api`` (load, quantize_model, export, run), also reachable as
``dqa_mcu.export`` etc.; importing the package alone stays light (torch loads on first use).
"""

__version__ = "0.1.0"

_API = ("load", "quantize_model", "export", "run")


def __getattr__(name: str):
    if name in _API:
        from dqa_mcu import api
        return getattr(api, name)
    raise AttributeError(f"module 'dqa_mcu' has no attribute {name!r}")
