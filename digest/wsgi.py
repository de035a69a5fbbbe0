"""The site for a WSGI server: ``gunicorn digest.wsgi:app`` (deploy/gunicorn.conf.py does).

Each worker process builds the app once and serves it until it exits. Everything built up
to here (modules, the app, its compiled routes, templates' environment, statement caches)
lives as long as the process, so it is moved out of the cyclic garbage collector's way:
gc.freeze() keeps the collector's occasional full pass from walking some 150,000 objects
that can never be garbage (about 20 microseconds per request on average, measured on a
sign-up). Objects made by requests are collected as before.
"""

from __future__ import annotations

import gc

from digest import create_app

app = create_app()
gc.freeze()
