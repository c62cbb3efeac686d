#!/bin/sh
# Alternate two source trees (A B A B ...) through write_path.py so that load changes on a
# shared machine hit both alike: compare.sh BEFORE_SRC AFTER_SRC ROUNDS [write_path args]
before=$1; after=$2; rounds=$3; shift 3
here=$(dirname "$0")
py=${PYTHON:-.venv/bin/python}
i=0
while [ "$i" -lt "$rounds" ]; do
    echo "== before ($before)"; CORRAL_SRC=$before "$py" "$here/write_path.py" "$@"
    echo "== after ($after)"; CORRAL_SRC=$after "$py" "$here/write_path.py" "$@"
    i=$((i + 1))
done
