"""openbell: one NYSE trading day on Alpaca, run by Apache Airflow."""

__version__ = "0.1.0"
