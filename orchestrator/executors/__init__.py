"""Executors: each runs a step's code in a process of its own (``base.py`` says what they
are given and report; ``process.py`` holds the plumbing they share)."""
