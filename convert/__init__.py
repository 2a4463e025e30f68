"""Training, int8 quantization and evaluation of the digit model (needs the `convert` extra)."""
