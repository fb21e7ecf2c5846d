#!/bin/sh
echo "a $1 $2 thing (script run by $(uname -s))"
