"""Importers of other tools' configurations. `flowd migrate colorfactory` turns a Fotoware Color Factory
export into a flowd configuration (config.toml, rules/*.yaml) and a report (MIGRATION.md) that says, for
every setting, what it became or why it was not carried over; `flowd migrate verify` runs the result in
simulate mode over sample files."""
