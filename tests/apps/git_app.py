"""dulwich's smart-HTTP git server: every repository under the directory named by env
GIT_ROOT, at URL path /<name relative to GIT_ROOT> (e.g. /repo.git/info/refs).

upload-pack (clone/fetch) and receive-pack (push) are both enabled (dulwich's defaults);
there is no authentication.
"""

import os

from dulwich.server import FileSystemBackend
from dulwich.web import make_wsgi_chain


class _RootedBackend(FileSystemBackend):
    # dulwich.web hands the backend the URL prefix with its leading "/" ("/repo.git"), which
    # os.path.join would treat as absolute; look it up under the root instead.
    def open_repository(self, path):
        return super().open_repository(os.fsdecode(path).lstrip("/"))


application = make_wsgi_chain(_RootedBackend(os.environ["GIT_ROOT"]))
