"""gim-tasks: scheduled ETL, aggregation, maintenance, statistics and export jobs for a
contact-center reporting data mart, on Celery + Redis + PostgreSQL."""

__version__ = "0.1.0"
