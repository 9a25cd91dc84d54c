#!/bin/sh
# Container entrypoint: migrate the schema, then run the controller in the foreground.
# Configuration comes from the environment (see env.example) and CALLCENTER_CONFIG.
set -eu
if [ "$#" -gt 0 ]; then
  exec callcenter "$@"           # e.g. `docker compose run callcenter crm import /data/customers.csv`
fi
callcenter db upgrade
exec callcenter run
