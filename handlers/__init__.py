"""Business handlers beyond the ledger. Each module is one handler, declared in
`common/topology.yaml` under `handlers:`; see the README's "Add a handler in 5 minutes"."""
