#!/usr/bin/env bash
# One database per service, each owned by a login role of the same name: mlfactory's store,
# Airflow's metadata and MLflow's tracking store share one PostgreSQL server and nothing else.
# The postgres image runs this once, when its data volume is new; the password of role NAME is
# read from NAME_DB_PASSWORD (upper case) and never appears on a command line.
set -euo pipefail

for name in ${APP_DATABASES:-mlfactory airflow mlflow}; do
    variable="${name^^}_DB_PASSWORD"
    if [ -z "${!variable:-}" ]; then
        echo "init-databases: $variable is empty; set it in deploy/.env" >&2
        exit 1
    fi
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        -v name="$name" -v variable="$variable" <<'SQL'
\getenv password :variable
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
done
