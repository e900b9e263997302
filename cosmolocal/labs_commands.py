"""`cosmolocal labs ...`: bring labs in from open formats (OKW, fablabs.io) and send them out as OKW."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import tomli_w
import typer

from cosmolocal.console import fail, out
from nodes.config import LabFileError, load_lab, write_lab
from protocol.errors import ProtocolError
from protocol.model import Lab
from protocol.okw import lab_to_okw, load_facilities

labs_app = typer.Typer(
    name="labs",
    help="Import labs from Open Know-Where / fablabs.io files; export labs as OKW with live capacity.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


@labs_app.command("import")
def import_labs(
    file: Annotated[Path, typer.Argument(help="OKW (IoPA or Helpful Engineering shape) or fablabs.io JSON.")],
    machines: Annotated[
        Path | None, typer.Option(help="fablabs.io geomachines CSV to join by lab slug.")
    ] = None,
    printers: Annotated[
        Path | None,
        typer.Option(
            help="OKW machines catalogue of 3D printers (CSV: Model, Technology, Brand, Build Size): joined "
            "printers get their model's technology and bed instead of an assumed 200 mm FDM bed."
        ),
    ] = None,
    country: Annotated[str | None, typer.Option(help="Keep only labs of this country (ISO alpha-2).")] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", help="Write one lab TOML file per lab into this folder.")
    ] = None,
    scenario_block: Annotated[
        Path | None,
        typer.Option(
            help="Write the labs as OKW JSON to this file and print the scenario [labs] block that reads it."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many labs.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing lab files.")] = False,
) -> None:
    """Read facility records and write Cosmolocal lab files (or a labs block); summarise what was read.

    Example:

      [bold]cosmolocal labs import facilities.json --machines geomachines.csv --country FR --out-dir labs/[/]

      [bold]cosmolocal labs import facilities.json --machines geomachines.csv --printers 3d_printers.csv[/]
    """
    if printers is not None and machines is None:
        fail("--printers gives the beds of joined printers: name the machines to join with --machines")
    try:
        result = load_facilities(file, machines, country, printers)
    except ProtocolError as exc:
        fail(str(exc))
    labs = result.labs[:limit] if limit else result.labs
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for lab in labs:
            try:
                write_lab(lab, out_dir / f"{lab.id}.toml", overwrite=force)
            except LabFileError as exc:
                fail(str(exc))
    if scenario_block is not None:
        records = [lab_to_okw(lab) for lab in labs]
        scenario_block.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        block = {"labs": {"source": "okw", "file": str(scenario_block), "count": len(labs)}}
        out.print("paste into a scenario file:\n" + tomli_w.dumps(block), highlight=False, markup=False)
    processes: dict[str, int] = {}
    for lab in labs:
        for machine in lab.machines:
            for process in machine.processes:
                processes[process] = processes.get(process, 0) + 1
    summary = ", ".join(f"{p} {n}" for p, n in sorted(processes.items()))
    out.print(
        f"read {len(labs)} labs ({result.shape or 'no records'}); machines: {summary or 'none'}; "
        f"{result.without_machines} labs list no machine (assembly bench only); "
        f"{result.skipped_no_location} records without coordinates skipped"
        + (f"; {result.printers_from_catalog} printers with their model's bed" if printers else "")
        + (f"; {len(result.skipped_invalid)} invalid records skipped" if result.skipped_invalid else ""),
        highlight=False,
    )
    if out_dir is None and scenario_block is None:
        for lab in labs[:20]:
            out.print(f"  {lab.id}: {lab.name} ({lab.location.place or ''})", highlight=False)
        if len(labs) > 20:
            out.print(f"  ... and {len(labs) - 20} more (write them with --out-dir)", highlight=False)


def _from_planner(url: str) -> list[dict[str, Any]]:
    """OKW records of every lab a running planner knows, with its live state."""
    try:
        response = httpx.get(url.rstrip("/") + "/labs", timeout=10.0)
        response.raise_for_status()
        listed = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        fail(f"{url}: cannot read the labs from the planner: {exc}")
    records = []
    fields = set(Lab.model_fields)
    for item in listed if isinstance(listed, list) else []:
        lab = Lab.model_validate({k: v for k, v in item.items() if k in fields})
        records.append(
            lab_to_okw(
                lab,
                live=item.get("live"),
                backlog_minutes=item.get("backlog_minutes"),
                free_stock=item.get("free_stock"),
            )
        )
    return records


@labs_app.command("export")
def export_labs(
    lab_files: Annotated[list[Path] | None, typer.Argument(help="Lab TOML files to export.")] = None,
    planner: Annotated[
        str | None, typer.Option(help="Planner API URL: export its labs with live state (GET /labs).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of standard output.")
    ] = None,
) -> None:
    """Write OKW facility records (JSON list) with capacity in an `x-cosmolocal` extension block.

    Examples:

      [bold]cosmolocal labs export labs/*.toml --out labs.okw.json[/]
      [bold]cosmolocal labs export --planner http://127.0.0.1:8080[/]
    """
    if not lab_files and not planner:
        fail("name lab files or --planner URL")
    records: list[dict[str, Any]] = []
    for path in lab_files or []:
        try:
            records.append(lab_to_okw(load_lab(path)))
        except LabFileError as exc:
            fail(str(exc))
    if planner:
        records += _from_planner(planner)
    text = json.dumps(records, indent=2, ensure_ascii=False)
    if output is None:
        sys.stdout.write(text + "\n")
    else:
        output.write_text(text + "\n", encoding="utf-8")
        out.print(f"wrote {len(records)} OKW records to {output}", highlight=False)
