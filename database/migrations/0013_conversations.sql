-- The receptionist's conversations (issue 30): each turn of a call as the receptionist answered
-- it, and what came of the call (an appointment request, a message, a transfer, a voicemail).
-- Written by the conversations projection (VoiceCoreProjections/Projections/ConversationsProjection.swift),
-- read with the call by GET /v1/calls/{call} (VoiceCoreQueries/CallQueries.swift).

-- One row per turn, from ReceptionistReplied. A turn answered again is the same reply (its id
-- derives from the turn's command); should two replies of one turn ever reach the stream, the
-- first in stream order stays (both sit on the call's partition, so a replay keeps the same one).
-- The primary key is also the detail read's index: a call's turns in order.
CREATE TABLE call_turns (
  tenant_id   uuid NOT NULL,
  call_id     uuid NOT NULL,
  turn        integer NOT NULL CHECK (turn >= 1),
  channel     text NOT NULL CHECK (channel IN ('relay', 'gather', 'call-control')),
  heard       text NOT NULL,
  reply       text NOT NULL,
  action      text NOT NULL CHECK (action IN ('continue', 'transfer', 'voicemail', 'hangup')),
  transfer_to text,
  slots       jsonb NOT NULL DEFAULT '{}'::jsonb,
  intent      text,
  decided_by  text NOT NULL CHECK (decided_by IN ('built-in', 'model', 'fallback')),
  replied_at  timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, call_id, turn)
);

-- One row per event (AppointmentRequested, MessageTaken, CallTransferred, VoicemailRecorded):
-- a republished event (same id) adds nothing. `details` holds the event's own fields, every one
-- present (null when the event lacks it). `turn` is null for a voicemail (no turn recorded it).
-- The primary key serves the detail read (a call's outcomes: one index range).
CREATE TABLE call_outcomes (
  tenant_id   uuid NOT NULL,
  call_id     uuid NOT NULL,
  event_id    uuid NOT NULL,
  kind        text NOT NULL CHECK (kind IN ('appointment', 'message', 'transfer', 'voicemail')),
  turn        integer CHECK (turn >= 1),
  details     jsonb NOT NULL,
  occurred_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, call_id, event_id)
);

-- Tenant-readable under row-level security, like every read model (0001, 0009): the tenant role
-- reads its own rows and writes none.
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['call_turns', 'call_outcomes']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
                     USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
                     WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
    EXECUTE format('GRANT SELECT ON %I TO voicecore_tenant', t);
  END LOOP;
END
$$;
