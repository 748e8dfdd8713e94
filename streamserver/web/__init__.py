"""The HTTP wing: the aiohttp application, its routes, the guard every route passes, and the
handlers by route family. Nothing below this package imports it (the CLI and the package's
``create_app``/``setup`` re-export are the only callers from outside)."""
