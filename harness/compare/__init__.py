"""``harness compare NEW --against REF``: a run against reference figures, with a decision a CI
job can act on (exit 0: nothing regressed, 1: something did, 2: bad input).

Each side is a matrix file, an output folder, an MLflow experiment (``mlflow:NAME``) or a
reference file that ``harness compare --save`` wrote. Rows are paired on (task, model, method,
swept values); quality is tested over seeds, efficiency held to relative bounds, and what
differs besides the code (packages, accelerator, commit, settings) is listed.

Modules: ``measures`` (what is measured: a registry of measures with their direction and
bound), ``gate`` (tolerances, bounds, which aspects gate), ``sides`` (reading a side),
``reference`` (reference files), ``pairing``, ``comparability`` (environment and settings
differences), ``checks`` (the tests and bounds), ``render`` (console, CSV, HTML), ``command``
(the subcommand's arguments), ``comparison`` (the two sides paired and
checked: :func:`compare_sides`). Nothing is imported here: the CLI imports ``command`` at start-up.
Sits above ``harness.report``, whose rows and statistics it uses.
"""
