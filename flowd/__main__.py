from flowd.cli import entry

entry()
