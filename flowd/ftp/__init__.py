"""The embedded FTP/FTPS server: uploads are rule triggers, exactly when they are complete.

It runs as a child process of `flowd run` (supervisor.py starts, restarts and stops it): an FTP I/O loop
sharing one interpreter with the workers waited on their GIL for every socket read, and served 3 MB/s
instead of 309 MB/s while one worker thread computed (measured on pyftpdlib 2.2, 8 clients, 1 MB files).

server.py   the child process: listener, TLS, recovery of interrupted uploads, the I/O loop
session.py  one control connection: login (scrypt checked off the loop), bans, permissions, transfers
fs.py       the view a user has of their group's root: confinement, reserved names, resumable uploads
intake.py   a finished upload becomes a job: completeness check, signed facts, final name, 226, then queued
users.py    accounts in the database; passwords.py their salted slow hashes
"""
