"""Code generation: the static memory plan and the C projects of the DQA and the TFLite-exact int8 modes."""
