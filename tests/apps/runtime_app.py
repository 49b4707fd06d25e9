"""Reports which Python runs the app and what it can import (test_runtime.py)."""

import importlib.util
import json
import os
import sys


def application(environ, start_response):
    pip = importlib.util.find_spec("pip")
    body = json.dumps({
        "version": list(sys.version_info[:3]),
        "base_prefix": sys.base_prefix,
        "pip_origin": pip.origin if pip else None,
        "process_env_keys": sorted(os.environ),
        "switch_interval": sys.getswitchinterval(),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
