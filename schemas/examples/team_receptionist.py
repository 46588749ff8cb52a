#!/usr/bin/env python3
"""A team's own receptionist in Python, answering caller turns over VoiceCore's streams (schemas/README.md).

Reads every partition's conversations command stream as its own consumer group with redis-py; for
each voicecore.command.conversation.report-caller-turn it decides a reply with a few keyword rules
and publishes voicecore.conversation.receptionist-replied on the same partition's conversations
event stream, with the contract's ids: id = uuid5(command id, "reply"), causationid = the command's
id. Both payloads are checked against their JSON Schemas. A command delivered again publishes
nothing new (one reply per turn: the reply's id is recorded with the XADD) and is acknowledged.

Run it instead of the platform's `receptionist` service (not beside it: both would answer).

    pip install redis jsonschema
    python3 schemas/examples/team_receptionist.py --redis-url redis://127.0.0.1:16379 --group frontdesk
"""
import argparse
import datetime
import json
import pathlib
import sys
import uuid

import jsonschema
import redis

SCHEMAS = pathlib.Path(__file__).resolve().parent.parent
TURN_TYPE = "voicecore.command.conversation.report-caller-turn"
REPLY_TYPE = "voicecore.conversation.receptionist-replied"
REPLY_SCHEMA = "https://schemas.voicecore.dev/events/conversation.receptionist-replied/v1"

# The first reply with this id wins: the check, the XADD and the record of the id are one script
# (as VoiceCore's own publisher does), so two deliveries of one turn never publish two replies.
# KEYS[1] the record, KEYS[2] the stream; ARGV[1] the record's lifetime, ARGV[2...] the XADD fields.
PUBLISH_ONCE = """
local prior = redis.call('GET', KEYS[1])
if prior then return {0, prior} end
local entry = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[1], entry, 'EX', ARGV[1])
return {1, entry}
"""


def schema_for(dataschema, cache={}):
    folder, name, version = dataschema.rstrip("/").split("/")[-3:]
    if dataschema not in cache:
        cache[dataschema] = json.loads((SCHEMAS / folder / f"{name}.{version}.schema.json").read_text())
    return cache[dataschema]


def now():
    # RFC 3339 in UTC with exactly six fraction digits, as the envelope requires.
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decide(turn):
    """The reply's text and action from what the caller said: the team's own policy goes here."""
    heard = (turn.get("text") or turn.get("digits") or "").strip()
    words = heard.lower()
    if any(word in words for word in ("bye", "that's all", "thats all")):
        return heard, "Thanks for calling. Goodbye!", "hangup"
    if any(word in words for word in ("voicemail", "message")):
        return heard, "Sure, please leave your message after the tone.", "voicemail"
    if not heard:
        return heard, "Sorry, I didn't catch that. How can I help?", "continue"
    return heard, "Thanks, I've noted that. Is there anything else?", "continue"


def reply_fields(fields, turn, source):
    command_id = fields["id"]
    heard, text, action = decide(turn)
    data = {
        "call_id": turn["call_id"], "provider": turn["provider"], "provider_call_id": turn["provider_call_id"],
        "turn": turn["turn"], "channel": turn["channel"], "heard": heard, "text": text, "action": action,
        "slots": {}, "decided_by": "model", "replied_at": now(),
    }
    jsonschema.validate(data, schema_for(REPLY_SCHEMA), format_checker=jsonschema.FormatChecker())
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid5(uuid.UUID(command_id), "reply")),
        "source": source,
        "type": REPLY_TYPE,
        "time": data["replied_at"],
        "subject": fields["subject"],
        "dataschema": REPLY_SCHEMA,
        "datacontenttype": "application/json",
        "tenantid": fields["tenantid"],
        "correlationid": fields["correlationid"],
        "causationid": command_id,
        "data": json.dumps(data, separators=(",", ":")),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:16379")
    parser.add_argument("--prefix", default="vc")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--group", default="team-receptionist")
    parser.add_argument("--consumer", default="worker-1")
    parser.add_argument("--source", default="/teams/example-receptionist")
    parser.add_argument("--stop-after", type=int, default=0, help="exit after answering this many turns (0: run forever)")
    args = parser.parse_args()

    r = redis.Redis.from_url(args.redis_url)
    publish_once = r.register_script(PUBLISH_ONCE)
    commands = [f"{args.prefix}:{{p{p:02d}}}:conversations:commands" for p in range(args.partitions)]
    for stream in commands:
        try:
            r.xgroup_create(stream, args.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
    answered = 0
    while args.stop_after == 0 or answered < args.stop_after:
        for stream, entries in r.xreadgroup(args.group, args.consumer, {s: ">" for s in commands}, count=100, block=1000) or []:
            stream = stream.decode()
            for entry_id, raw in entries:
                fields = {k.decode(): v.decode() for k, v in raw.items()}
                if fields.get("type") != TURN_TYPE:
                    r.xack(stream, args.group, entry_id)  # not a turn: not ours to answer
                    continue
                turn = json.loads(fields["data"])
                jsonschema.validate(turn, schema_for(fields["dataschema"]), format_checker=jsonschema.FormatChecker())
                reply = reply_fields(fields, turn, args.source)
                # The same partition's event stream: vc:{p07}:conversations:commands -> vc:{p07}:conversations.
                events = stream[: -len(":commands")]
                record = f"{events}:team-reply:{reply['id']}"
                flat = [value for pair in reply.items() for value in pair]
                published, entry = publish_once(keys=[record, events], args=[86400] + flat)
                print(json.dumps({"command": fields["id"], "reply": reply["id"], "published": bool(published),
                                  "entry": entry.decode(), "action": json.loads(reply["data"])["action"]}), flush=True)
                r.xack(stream, args.group, entry_id)
                answered += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
