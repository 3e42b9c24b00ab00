"""``millrace``, the command line (``main``), and the composition root (``wiring``)."""
