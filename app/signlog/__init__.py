"""The signature log (issue 12): a per-letter append-only Merkle log of every change to
a letter's count, with signed checkpoints, proofs and signers' receipts.

`entries` records events in the transaction that changes the count; `sequencer` (in the
worker) appends them to the tree and signs checkpoints; `keys` holds the log's key;
`service` answers the public reads; `api`/`pages` serve them. The tree and note formats
are `app.transparency`'s (RFC 6962, C2SP signed notes)."""
