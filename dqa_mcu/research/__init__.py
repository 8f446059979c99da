"""The paper's setting simulated in float, and the accuracy / memory tables of `dqa-mcu table`."""
