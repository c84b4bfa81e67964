#!/bin/sh
echo "bazel coverage is not supported in this offline build (see docs/adr/0001-build.md)" >&2
exit 1
