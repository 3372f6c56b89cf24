"""Redis backends behind small contracts (``base``): single node, Redis Cluster and Sentinel.

``app.py`` is the one place that picks an implementation; the service and the hub see only the
protocols of ``base``. This package's ``__init__`` imports nothing, so importing one backend
module never drags the others (or a cycle with ``server.store``) in.
"""
