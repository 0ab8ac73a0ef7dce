"""The reports: what a run, a cut-over or an abort leaves behind for people and for later runs.

Layers, bottom to top (each imports only those below it):

* :mod:`.markdown` -- ``report.md`` from a report dict (pure text); :mod:`.chart` -- the SVG charts
  of the rehearsal trend (the report's ``rehearsal.svg`` and the Migrations page's);
* :mod:`.schema` -- ``report.json``'s schema and where reports live (write, read, runs, history.jsonl);
* :mod:`.history` -- the plan's forecast and the report's comparison with earlier runs, the
  downtime window;
* :mod:`.assemble` -- one assembler for the three kinds of report (run, cut-over, abort) and the
  verdict.
"""
