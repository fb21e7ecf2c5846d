#!/bin/sh
echo "first_param=$first_param"
echo "second_param=$second_param"
echo "shared_param=$shared_param"
