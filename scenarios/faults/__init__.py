"""The fault and load harness: real processes broken on purpose, then judged from what they recorded.

- `chaos`: a seeded fault schedule (kills, pauses, garbage, impostors, repeated POSTs, one-way
  cuts) over a real local mesh (`cosmolocal chaos`);
- `proxy`: the lossy link between labs and planner (drops, duplicates, reorders, cuts frames);
- `invariants`: what must hold afterwards, checked from the planner's ledger and the labs' journals.

Scenario replay (spec, world, sim, policies, metrics, report, live, builtin) never imports this
package (an import-linter contract in pyproject.toml holds it): replay measures plans, this breaks
processes.
"""
