-- The boxes' structured logs (warnings and errors by default: the
-- `sync.config.log_level` of each box), and the firmware image a box runs.

-- IMAGE_VERSION of the box's os-release; NULL when HomeSec does not run on
-- the appliance image.
ALTER TABLE devices ADD COLUMN image_version text;

-- One row per log record per box. `id` is a random 64-bit number the box gives
-- a record when it is captured and keeps with it until Postgres has it: a batch
-- sent again after a crash between the commit here and the box's local ack
-- hits the primary key and is skipped (ON CONFLICT DO NOTHING). Random rather
-- than a counter so that a box whose store was wiped or restored from a backup
-- (its counter back at an earlier value) never has a new record taken for one
-- already here. `seq` is the order of the box's records (ties within one
-- millisecond); it starts again with a new store.
CREATE TABLE logs (
    device_id text        NOT NULL,
    id        bigint      NOT NULL,
    seq       bigint      NOT NULL,
    ts        timestamptz NOT NULL,
    level     text        NOT NULL,
    target    text        NOT NULL,
    message   text        NOT NULL,
    fields    jsonb       NOT NULL,
    PRIMARY KEY (device_id, id)
);
-- "Every box's problems in the last hour", one box's recent log, and one level
-- over time.
CREATE INDEX idx_logs_ts ON logs (ts);
CREATE INDEX idx_logs_device_ts ON logs (device_id, ts);
CREATE INDEX idx_logs_level_ts ON logs (level, ts);
