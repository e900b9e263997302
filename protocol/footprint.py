"""Transport footprint: one stated CO2 factor and the mass of a unit, shared by every report.

The planner's network page and the scenario reports must give comparable figures, so the factor,
its source and the materials' masses live here once.
"""

from __future__ import annotations

from protocol.model import Design

#: kg CO2e per tonne-km of road freight, and where it comes from.
CO2_KG_PER_TONNE_KM = 0.70978
CO2_SOURCE = (
    "Defra/DECC 2012 GHG Conversion Factors for Company Reporting, Annex 7 (freight), Table 7e: "
    "diesel rigid HGV >3.5-7.5 t at UK average load, all scopes, 0.70978 kg CO2e per tonne.km; "
    "unit mass from the design's materials; great-circle km from lab to delivery point"
)
#: kg per unit of each material (kg materials weigh their amount; sheet and elastic by area and length).
MATERIAL_KG: dict[str, float] = {
    "petg": 1.0,
    "pla": 1.0,
    "resin": 1.0,
    "pet_sheet_0_5": 0.69,  # 0.5 mm x 1.38 g/cm3
    "elastic": 0.01,  # 20 mm elastic band, about 10 g per metre
}


def unit_kg(design: Design) -> float:
    """Mass of one unit from its materials (materials of unknown mass count as nothing)."""
    return sum(MATERIAL_KG.get(m, 0.0) * amount for m, amount in design.materials_per_unit().items())
