#!/bin/sh
# Creates the ISLS database with three replicas before any ingest starts (compose.yaml's
# gemini-init service; the ingests wait for it to finish). Were the ingest first, its own
# CREATE DATABASE (control_center/storage/posting.py) would make it with one replica.
# Creating an existing database again is no error for openGemini, so this runs at every
# `docker compose up`.
#   OG_URL          a ts-sql node (http://gemini-1:8086)
#   ISLS_INFLUX_DB  the database (isls)
#   OG_REPLICATION  replicas per point (3: odd, and the number of ts-store nodes)
set -eu

url="${OG_URL:?OG_URL must name a ts-sql node, e.g. http://gemini-1:8086}"
database="${ISLS_INFLUX_DB:?ISLS_INFLUX_DB must name the database}"
replicas="${OG_REPLICATION:-3}"

tries=0
until curl -fsS -o /dev/null "$url/ping"; do
    tries=$((tries + 1))
    if [ "$tries" -ge 120 ]; then
        echo "gemini-init: $url/ping did not answer within 120 s" >&2
        exit 1
    fi
    sleep 1
done

# InfluxQL errors come back as HTTP 200 with "error" in the body: look at the body too.
statement="CREATE DATABASE \"$database\" WITH REPLICATION $replicas"
answer="$(curl -fsS -X POST "$url/query" --data-urlencode "q=$statement")"
case "$answer" in
    *'"error"'*)
        echo "gemini-init: $url refused <$statement>: $answer" >&2
        exit 1
        ;;
esac
echo "gemini-init: <$statement> done: $answer"
