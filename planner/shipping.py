"""Material transfers as the planner keeps them: one row per parcel, its state, and what it means
for the next solve (SPEC.md section 11).

A transfer of a committed plan is `sent` (SHIP is on its way to the sender), then `shipped` (the
sender took the material off its stock; INCOMING goes to the receiver), then `arrived` (the receiver's
stock has it). It may end `refused` (the sender said no) or `void` (the sender was lost before it
answered). Until it has arrived, the solver must see it where it is:

- `sent`: the sender still reports the material as its own, but the plan spent it on this parcel,
  so it is taken off the sender's free stock; the receiver has it in transit;
- `shipped`: the sender's own STOCK no longer holds it; the receiver has it in transit;
- `arrived`, `refused`, `void`: nothing (the labs' STOCK reports say where the material is).

Work that uses material not yet in the lab's stock is not sent to the lab (`held_back`): a lab
accepts work against the stock it has, and the re-plan that follows the arrival sends it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from protocol.model import Allocation, Design, Transfer
from solver.model.lines import part_of
from solver.model.problem import InTransit

#: States of a transfer whose material is on the road, or about to be.
UNDER_WAY = frozenset({"sent", "shipped"})
#: States from which a transfer never moves again (a late SHIPPED may still revive a void one).
ENDED = frozenset({"arrived", "refused"})
TRANSFER_STATES = ("sent", "shipped", "arrived", "refused", "void")


class UnknownTransfer(LookupError):
    """A lab spoke of a transfer that does not exist or in which it has no part."""


@dataclass
class TransferRow:
    """One parcel of material between two labs, as the ledger keeps it."""

    id: str
    transfer: Transfer
    plan_version: int
    state: str
    reason: str | None
    updated_at: str

    def to_json(self) -> dict[str, Any]:
        """The row as the API and the events show it."""
        return {
            "id": self.id,
            **self.transfer.model_dump(mode="json"),
            "plan_version": self.plan_version,
            "state": self.state,
            "reason": self.reason,
            "updated_at": self.updated_at,
        }


def withheld(rows: list[TransferRow], lab_id: str) -> dict[str, float]:
    """Material -> amount a lab was told to ship and has not shipped yet: not free for its work."""
    out: dict[str, float] = {}
    for row in rows:
        t = row.transfer
        if row.state == "sent" and t.from_lab == lab_id:
            out[t.material] = out.get(t.material, 0.0) + t.quantity
    return out


def on_the_way(rows: list[TransferRow], lab_id: str) -> tuple[InTransit, ...]:
    """The material on its way to a lab (sent or shipped, not arrived), for the solver."""
    return tuple(
        InTransit(row.transfer.material, row.transfer.quantity, row.transfer.arrive_at)
        for row in rows
        if row.state in UNDER_WAY and row.transfer.to_lab == lab_id
    )


def units_waiting(allocation: Allocation, design: Design) -> int:
    """Units of a plan line made from material that reaches its lab by transfer (not yet in stock)."""
    per_unit = design.materials_per_unit()
    units = 0
    for material, amount in allocation.received.items():
        each = per_unit.get(material, 0.0)
        if each > 0:
            units = max(units, math.ceil(amount / each - 1e-9))
    return min(units, allocation.quantity)


def held_back(
    planned: list[Allocation], sent: list[Allocation], design_of: dict[str, Design]
) -> list[Allocation]:
    """The lines of `sent` (what the rolling horizon sends now) less the units of the plan's lines
    (`planned`) that wait for material: at most a line's units made from its own stock go out.

    `design_of` maps order id -> design. The units held stay planned, and the re-plan after the
    material arrives sends them.
    """
    may: dict[tuple[str, str], int] = {}
    for a in planned:
        key = (a.order_id, a.lab_id)
        may[key] = may.get(key, 0) + a.quantity - units_waiting(a, design_of[a.order_id])
    out = []
    for line in sent:
        key = (line.order_id, line.lab_id)
        quantity = min(line.quantity, may.get(key, line.quantity))
        if quantity <= 0:
            continue
        may[key] = may.get(key, quantity) - quantity
        if quantity < line.quantity:
            line = part_of(line, quantity, min(line.late_units, quantity))
        out.append(line)
    return out
