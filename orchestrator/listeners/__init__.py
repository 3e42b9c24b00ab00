"""The listener: event triggers consumed from brokers and databases (``millrace listener``).

``process.py`` is the process (leader election, the triggers table read every few seconds,
one lane per trigger); ``lanes.py`` a trigger's connection kept up with backoff; one module
per kind of source (``amqp.py``, ``mqtt.py``, ``jetstream.py``, ``redis_streams.py``,
``postgres.py``), giving messages to a handler and acknowledging each after
it returned.
"""
