"""What the tests, the benchmarks and `make run`'s demo share to start the service's processes (a
`flask` command, the worker, gunicorn, the local Pluggy stand-in), to wait for them and to stop them.

- `ports`: a free loopback port, a port already taken;
- `waiting`: polling a condition until it holds, failing at a deadline; an HTTP endpoint answering;
  the stand-in idle;
- `processes`: the environment a process of the service runs with, starting one with its output
  where it is wanted, reading that output, running commands to their end, stopping and killing.
"""
