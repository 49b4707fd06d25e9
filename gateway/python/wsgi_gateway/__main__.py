"""``python -m wsgi_gateway …``: the same command line as the ``wsgi-gateway`` script."""

import sys

from wsgi_gateway import main

if __name__ == "__main__":
    sys.exit(main())
