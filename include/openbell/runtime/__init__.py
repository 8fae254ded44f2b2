"""Running openbell: Airflow's processes, the demo, the command for real (paper or live) use."""
