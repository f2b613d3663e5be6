"""The only file Airflow needs: one DAG per registered mlfactory pipeline.

Point Airflow's DAG folder (``AIRFLOW__CORE__DAGS_FOLDER``) here. Importing it builds the DAGs
and nothing else: no store or network access at parse time.
"""

from mlfactory.orchestration.airflow import build_dags

globals().update(build_dags())
