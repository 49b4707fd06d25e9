"""wsgi-gateway: run Python WSGI applications (PEP 3333) from a Rust core.

The server is the extension module ``wsgi_gateway._core``; ``wsgi-gateway`` (the console
script) and ``python -m wsgi_gateway`` run its command line in this interpreter.
"""

from wsgi_gateway._core import __version__

__all__ = ["__version__", "main"]


def main():
    """The console script: runs ``wsgi-gateway`` with this process's arguments."""
    import sys

    from wsgi_gateway._core import main as _main

    return _main(sys.argv)
