"""Mercurial's hgweb serving one repository: the directory named by env HG_REPO.

Push is open to anyone over plain HTTP (web.push_ssl=false, web.allow-push=*). The ui is
built without reading any hgrc (no HOME needed: lighttpd gives CGI programs almost no
environment), so only the settings below apply.
"""

import os

from mercurial import ui as uimod
from mercurial.hgweb import hgweb


def _baseui():
    u = uimod.ui()
    for section, name, value in (
        (b"web", b"push_ssl", b"false"),
        (b"web", b"allow-push", b"*"),
        (b"ui", b"report_untrusted", b"off"),
    ):
        u.setconfig(section, name, value, b"hgweb_app")
    return u


application = hgweb(os.fsencode(os.environ["HG_REPO"]), baseui=_baseui())
