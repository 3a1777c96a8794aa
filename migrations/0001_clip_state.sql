-- Clip state synced from HomeSec boxes: one row per clip per box, the events
-- that explain it, and the boxes themselves.

CREATE TABLE clip_states (
    device_id  text        NOT NULL,
    clip_id    text        NOT NULL,
    data       jsonb       NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (device_id, clip_id)
);
CREATE INDEX idx_clip_states_status ON clip_states ((data->>'status'));
CREATE INDEX idx_clip_states_camera ON clip_states ((data->>'camera_name'));
CREATE INDEX idx_clip_states_updated ON clip_states (updated_at);

CREATE TABLE clip_events (
    device_id  text        NOT NULL,
    clip_id    text        NOT NULL,
    seq        integer     NOT NULL,
    event_type text        NOT NULL,
    ts         timestamptz NOT NULL,
    data       jsonb       NOT NULL,
    UNIQUE (device_id, clip_id, seq)
);
CREATE INDEX idx_clip_events_ts ON clip_events (ts);

CREATE TABLE devices (
    device_id text PRIMARY KEY,
    name      text        NOT NULL,
    version   text        NOT NULL,
    cameras   jsonb       NOT NULL,
    last_seen timestamptz NOT NULL
);
