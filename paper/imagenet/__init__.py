"""The paper's ImageNet runs on GPUs: commands and CPU dry-runs (see README.md)."""
