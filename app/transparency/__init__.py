"""A transparency log library: RFC 6962 Merkle trees, C2SP signed notes and checkpoints.

Pure and self-contained (it imports nothing from the rest of the app), so the same code
can run in the server, in the sequencer and in an offline verifier.

- `app.transparency.merkle`: leaf and node hashing, tree heads, inclusion and
  consistency proofs and their verification (RFC 6962 / RFC 9162), an in-memory
  `Frontier` (the compact range [0, n)), and proofs from stored hashes (the
  layout of Go's golang.org/x/mod/sumdb/tlog: every node stored once).
- `app.transparency.note`: Ed25519 signed notes (c2sp.org/signed-note) and tree
  checkpoints (c2sp.org/tlog-checkpoint).
"""
