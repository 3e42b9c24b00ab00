"""The ``millrace`` commands, a module per group; each module's ``add_*`` functions add a
command's parser to the ``millrace`` subparsers, with the function that runs it as ``handler``.

A command imports Celery, Flask and the services (which import Celery) inside its
function, so that building the parser, ``--help`` and ``millrace schema`` stay light.
"""
