"""The sandboxed side of the validator worker.

Everything in this package runs inside bwrap as an unprivileged user with seccomp: it imports only
the standard library, third-party packages from the locked venv and its own modules (relative
imports), because the launcher copies exactly this directory into the sandbox.
"""
