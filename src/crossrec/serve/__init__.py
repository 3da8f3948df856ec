"""The HTTP service (``crossrec serve``): FastAPI routes over the workspace's Python API.

Modules: ``app`` (routes, error bodies), ``auth`` (bearer tokens), ``limits`` (body size,
rate), ``metrics`` (Prometheus), ``state`` (the loaded model, online updates, model swap),
``profile`` (an account's summary), ``schemas`` (request and response documents). FastAPI is
imported only by these modules, never by ``import crossrec``.
"""
