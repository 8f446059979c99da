"""Quantization: calibration, channel rankings, the DQA quantizer, memory budgets and `recommend`."""
