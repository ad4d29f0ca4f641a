"""Job brokers. Each module in this package is one broker and is found by itself: its module
name is the broker's name (``MOODRING_BROKER``) and its ``open(redis, settings,
dead_letter_stream, blobs)`` returns a :class:`~inference.api.transport.Transport` (the submit
side, the worker side, and what the doctor and the metrics read). A new broker (another stream
engine, a managed queue) is one new module here, plus its test; a broker with settings of its
own declares them in its module (a pydantic-settings class, ``MOODRING_`` prefix) and reads them
in ``open``, which each process calls once at its composition root.
:func:`inference.api.transport.open_transport` finds it by name.

The bot's own state (users, sessions, cooldowns) stays in Redis whichever broker carries the
jobs: ``redis`` is always passed, and a broker may use it or not.
"""
