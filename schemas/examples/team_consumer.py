#!/usr/bin/env python3
"""A team's consumer in Python, following VoiceCore's wire contract (schemas/README.md).

Reads every partition of the call event streams as its own consumer group with redis-py,
validates each payload against its JSON Schema, prints one JSON line per event and acknowledges it.

    pip install redis jsonschema
    python3 schemas/examples/team_consumer.py --redis-url redis://127.0.0.1:16379 --group analytics
"""
import argparse
import json
import pathlib
import sys

import jsonschema
import redis

SCHEMAS = pathlib.Path(__file__).resolve().parent.parent


def schema_for(dataschema, cache={}):
    # https://schemas.voicecore.dev/events/call.ended/v1 -> schemas/events/call.ended.v1.schema.json
    folder, name, version = dataschema.rstrip("/").split("/")[-3:]
    if dataschema not in cache:
        cache[dataschema] = json.loads((SCHEMAS / folder / f"{name}.{version}.schema.json").read_text())
    return cache[dataschema]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:16379")
    parser.add_argument("--prefix", default="vc")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--group", default="python-example")
    parser.add_argument("--consumer", default="worker-1")
    parser.add_argument("--stop-after", type=int, default=0, help="exit after this many events (0: run forever)")
    args = parser.parse_args()

    r = redis.Redis.from_url(args.redis_url)
    streams = [f"{args.prefix}:{{p{p:02d}}}:calls" for p in range(args.partitions)]
    for stream in streams:
        try:
            r.xgroup_create(stream, args.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
    handled = 0
    while args.stop_after == 0 or handled < args.stop_after:
        for stream, entries in r.xreadgroup(args.group, args.consumer, {s: ">" for s in streams}, count=100, block=1000) or []:
            for entry_id, raw in entries:
                fields = {k.decode(): v.decode() for k, v in raw.items()}
                data = json.loads(fields["data"])
                try:
                    jsonschema.validate(data, schema_for(fields["dataschema"]), format_checker=jsonschema.FormatChecker())
                except FileNotFoundError:
                    pass  # a type or version this consumer does not know: skip it, do not fail
                print(json.dumps({"stream": stream.decode(), "entry": entry_id.decode(), "id": fields["id"],
                                  "type": fields["type"], "tenantid": fields["tenantid"], "data": data}), flush=True)
                r.xack(stream, args.group, entry_id)
                handled += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
