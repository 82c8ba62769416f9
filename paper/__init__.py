"""The paper's experiments as runnable, resumable scripts."""
