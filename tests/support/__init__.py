"""What the tests share: real servers on loopback, the Drive fake, runs of the real Airflow, the monitoring tools, the
bundled data. Imports go one way: tests and conftest import from here; nothing here imports a test or a conftest."""
