# The pipeline's Airflow image: the official Apache Airflow image plus the project's requirements and code.
# Built by `make up` / `make rebuild` (mk/stack.mk) through docker-compose.yml; see docs/stack.md.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
# The official image; the stack test (docs/stack-test.md) builds on a local stand-in of it instead.
ARG BASE_IMAGE=apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
FROM ${BASE_IMAGE}

# Re-declared: an ARG before FROM is not visible after it.
ARG AIRFLOW_VERSION=3.3.2
ENV PROJECT_DIR=/opt/airflow/project

# As the image's `airflow` user (the official way to extend the image); naming Airflow's own version keeps pip
# from replacing it while resolving requirements.txt, which pins the same version.
COPY --chown=airflow:0 requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/requirements.txt

# The project keeps its layout under PROJECT_DIR (the settings' defaults are relative to it) and is installed in
# editable mode, as in .venv, so `etl` and `utils` import from anywhere.
COPY --chown=airflow:0 pyproject.toml ${PROJECT_DIR}/pyproject.toml
COPY --chown=airflow:0 dags/ ${PROJECT_DIR}/dags/
COPY --chown=airflow:0 plugins/ ${PROJECT_DIR}/plugins/
COPY --chown=airflow:0 etl/ ${PROJECT_DIR}/etl/
COPY --chown=airflow:0 utils/ ${PROJECT_DIR}/utils/
COPY --chown=airflow:0 data/BreastCancer.csv ${PROJECT_DIR}/data/BreastCancer.csv
COPY --chown=airflow:0 --chmod=0755 entrypoint.sh ${PROJECT_DIR}/entrypoint.sh
RUN pip install --no-cache-dir --no-deps --editable ${PROJECT_DIR}

# Mount points, group 0 writable like the rest of /opt/airflow, so any AIRFLOW_UID (with GID 0) can write them;
# an empty named volume mounted here takes these owners and modes.
RUN mkdir -p /opt/airflow/runs /opt/airflow/results /opt/airflow/auth /opt/airflow/secrets \
    && chmod 0775 /opt/airflow/runs /opt/airflow/results /opt/airflow/auth

ENV AIRFLOW__CORE__DAGS_FOLDER=${PROJECT_DIR}/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=${PROJECT_DIR}/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    BUNDLED_DATA_PATH=${PROJECT_DIR}/data/BreastCancer.csv \
    RUNS_DIR=/opt/airflow/runs \
    RESULTS_DIR=/opt/airflow/results

WORKDIR ${PROJECT_DIR}
# entrypoint.sh prepares the stack (in airflow-init) and hands over to the official /entrypoint.
ENTRYPOINT ["/usr/bin/dumb-init", "--", "/opt/airflow/project/entrypoint.sh"]
CMD ["--help"]
