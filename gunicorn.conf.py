"""Read by gunicorn from the folder it starts in. Workers, threads and the address stay on the
command line (README, "Running in production")."""

# Its own lines in the service's log format, and no access lines with raw paths.
logger_class = "observability.gunicorn.Logger"
