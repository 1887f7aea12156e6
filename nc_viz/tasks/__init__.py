"""One module or package per command, each run from typed options: `figures` (compare and
neurons), `batch`, `evaluate`, `training` (train, recipe, sweep); `provenance` (what drew an
output) and `guards` (no output onto an input) serve them all. Only `cli/` imports these."""
