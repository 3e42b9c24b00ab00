"""Millrace's core: flow model, expressions, compiler, run state, persistence, executors."""
