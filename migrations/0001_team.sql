-- Team mode: one ledger, one queue of leavers, leases, and the hosts at
-- work on each app. Applied by `offboard store migrate` (or on first use)
-- as the schema owner, in one transaction.

-- The role the application's login is granted: INSERT and SELECT on the
-- ledger (never UPDATE or DELETE), and what the queue needs.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'offboard_writer') THEN
    CREATE ROLE offboard_writer NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  -- Created meanwhile by a migration of another database in the cluster.
  NULL;
END
$$;

-- One row per ledger record: `line` is the record's exact JSON text, as a
-- line of ledger.jsonl; its `prev` is the SHA-256 of the previous `line`.
CREATE TABLE offboard_ledger (
  seq         bigint      PRIMARY KEY CHECK (seq > 0),
  case_email  text        NOT NULL,
  line        text        NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX offboard_ledger_case ON offboard_ledger (case_email, seq);

-- Append-only for every role, the owner included.
CREATE FUNCTION offboard_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the offboard ledger is append-only: % refused', TG_OP;
END
$$;
CREATE TRIGGER offboard_ledger_no_update BEFORE UPDATE OR DELETE ON offboard_ledger
  FOR EACH ROW EXECUTE FUNCTION offboard_ledger_append_only();
CREATE TRIGGER offboard_ledger_no_truncate BEFORE TRUNCATE ON offboard_ledger
  FOR EACH STATEMENT EXECUTE FUNCTION offboard_ledger_append_only();

-- Other operators' steps, live: NOTIFY offboard_ledger '<seq> <case>'.
CREATE FUNCTION offboard_ledger_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('offboard_ledger', NEW.seq::text || ' ' || NEW.case_email);
  RETURN NULL;
END
$$;
CREATE TRIGGER offboard_ledger_notify AFTER INSERT ON offboard_ledger
  FOR EACH ROW EXECUTE FUNCTION offboard_ledger_notify();

-- The queue: leavers from rosters and `:add`.
CREATE TABLE offboard_leavers (
  email    text        PRIMARY KEY,
  name     text,
  source   text        NOT NULL,
  added_by text        NOT NULL,
  added_at timestamptz NOT NULL DEFAULT now()
);

-- Who works a leaver: claimed with FOR UPDATE SKIP LOCKED, renewed while
-- working, free again once `expires` has passed.
CREATE TABLE offboard_leases (
  email   text        PRIMARY KEY,
  holder  text        NOT NULL,
  token   text        NOT NULL,
  since   timestamptz NOT NULL,
  expires timestamptz NOT NULL
);

CREATE FUNCTION offboard_queue_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('offboard_queue', COALESCE(NEW.email, OLD.email));
  RETURN NULL;
END
$$;
CREATE TRIGGER offboard_leavers_notify AFTER INSERT OR UPDATE ON offboard_leavers
  FOR EACH ROW EXECUTE FUNCTION offboard_queue_notify();
CREATE TRIGGER offboard_leases_notify AFTER INSERT OR UPDATE OR DELETE ON offboard_leases
  FOR EACH ROW EXECUTE FUNCTION offboard_queue_notify();

-- Live hosts per app (heartbeats), to share each vendor's quota.
CREATE TABLE offboard_hosts (
  host text        NOT NULL,
  app  text        NOT NULL,
  seen timestamptz NOT NULL,
  PRIMARY KEY (host, app)
);

GRANT SELECT, INSERT ON offboard_ledger TO offboard_writer;
GRANT SELECT, INSERT, UPDATE ON offboard_leavers TO offboard_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON offboard_leases TO offboard_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON offboard_hosts TO offboard_writer;
GRANT SELECT ON offboard_schema TO offboard_writer;
