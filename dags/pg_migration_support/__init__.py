"""Airflow glue of the project's DAGs: Airflow in (params, run ids, connections), library calls out.

The library (``include/pg_migration``) never imports Airflow; these modules are where the two meet:

* :mod:`.connections` -- Airflow connections as the library's endpoints;
* :mod:`.params` -- every DAG's trigger form (titles, descriptions, types);
* :mod:`.tasks` -- the task bodies of ``pg_migration`` (and its rehearsal);
* :mod:`.replicate_tasks` -- the task bodies of replicate mode, ``pg_migration_cutover`` and
  ``pg_migration_abort``;
* :mod:`.ecs` -- the ECS Fargate runner (its operator, requests and pre-flight);
* :mod:`.pool_check` -- the pre-flight finding on the ``pg_migration`` pool;
* :mod:`.rehearsal` -- the weekend rehearsal's schedule and docs.

This folder is listed in ``dags/.airflowignore``: it holds no DAG.
"""
