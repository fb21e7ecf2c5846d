#!/bin/sh
# sh> script of the example project: every stored value is an environment variable.
set -eu
echo "== ${REPORT_TITLE} =="
echo "numbers=${numbers} total=${total} doubled=${doubled}"
echo "message=${message}"
echo "shout=${shout}"
