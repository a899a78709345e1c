"""pyftpdlib, imported once. On Python 3.11 it imports the standard library's asyncore and asynchat, which
warn that they are deprecated (3.12+ installs pyftpdlib's own copies): that warning is not ours to show."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import AuthenticationFailed, DummyAuthorizer
    from pyftpdlib.exceptions import FilesystemError
    from pyftpdlib.filesystems import AbstractedFS
    from pyftpdlib.handlers import DTPHandler, FTPHandler
    from pyftpdlib.ioloop import AsyncChat, IOLoop
    from pyftpdlib.servers import FTPServer

    try:
        from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
    except ImportError:  # pyOpenSSL missing: plain FTP only
        TLS_DTPHandler = TLS_FTPHandler = None

__all__ = ["AbstractedFS", "AsyncChat", "FilesystemError", "AuthenticationFailed", "DTPHandler", "DummyAuthorizer", "FTPHandler", "FTPServer", "IOLoop",
           "TLS_DTPHandler", "TLS_FTPHandler"]
