"""Evaluation of embeddings: faiss kNN, linear probes, fine-tuning, transfer, diagnostics."""
