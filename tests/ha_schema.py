"""Checks HomeSec's Home Assistant MQTT payloads against Home Assistant's own
discovery schemas (the `homeassistant` package, 2024.3.3: the last release
that runs on Python 3.11).

Reads JSON from stdin: a list of {"topic": ..., "payload": ...} (payload as a
string; retained messages as the broker holds them). Prints every problem and
exits 1 when there is one; prints what it checked otherwise.

What 2024.3.3 knows is checked by its code: abbreviations are expanded with
`homeassistant.components.mqtt.abbreviations` (ABBREVIATIONS,
DEVICE_ABBREVIATIONS, ORIGIN_ABBREVIATIONS) as its discovery does, the origin
goes through `discovery.MQTT_ORIGIN_INFO_SCHEMA`, and each entity through
`homeassistant.components.mqtt.<platform>.DISCOVERY_SCHEMA`. Those schemas
drop unknown keys silently (vol.REMOVE_EXTRA), so a key the schema dropped is
reported as unknown.

What is newer than 2024.3.3 is stripped before that and checked here against
the current documentation:
- device-based discovery (2024.11), https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload :
  topic `<prefix>/device/<object_id>/config`; `dev` (device, with `ids`) and
  `o` (origin, with `name`) required; `cmps` maps a component id to its config
  with `p` (platform); options beside `dev`/`o`/`cmps` are shared by every
  component; a component given as `{"p": "<platform>"}` alone is being removed;
  every component needs a `unique_id` (they are entities of a device).
- `default_entity_id` (2025.10, replaces `object_id`),
  https://www.home-assistant.io/integrations/mqtt/#naming-of-mqtt-entities :
  a string `<platform>.<object_id>` whose platform is the component's.
- `options` of an MQTT sensor (2024.5), https://www.home-assistant.io/integrations/sensor.mqtt/#options :
  a non-empty list of strings, only with `device_class: enum`.
- `update_percentage` and `in_progress` in the update entity's JSON state
  (2024.11), https://www.home-assistant.io/integrations/update.mqtt/ :
  `update_percentage` an integer or float 0-100 or null, `in_progress` a boolean.
"""

import importlib
import json
import re
import sys

from homeassistant.components.mqtt import abbreviations as abbr
from homeassistant.components.mqtt.discovery import MQTT_ORIGIN_INFO_SCHEMA

DEVICE_TOPIC = re.compile(r"^[^#+]+/device/([a-zA-Z0-9_-]+)/config$")
ENTITY_TOPIC = re.compile(r"^[^#+]+/([a-z_]+)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)/config$")
OBJECT_ID = re.compile(r"^[a-z0-9_]+$")

problems = []
checked = {"devices": 0, "components": 0, "removed": 0, "cleared": 0, "states": 0}


def problem(where, what):
    problems.append(f"{where}: {what}")


def expand(payload):
    """Expands abbreviations as Home Assistant's discovery does."""
    out = {abbr.ABBREVIATIONS.get(k, k): v for k, v in payload.items()}
    if isinstance(out.get("device"), dict):
        out["device"] = {abbr.DEVICE_ABBREVIATIONS.get(k, k): v for k, v in out["device"].items()}
    if isinstance(out.get("origin"), dict):
        out["origin"] = {abbr.ORIGIN_ABBREVIATIONS.get(k, k): v for k, v in out["origin"].items()}
    return out


def check_default_entity_id(where, platform, config):
    value = config.pop("default_entity_id", None)
    if value is None:
        return
    if not isinstance(value, str) or "." not in value:
        problem(where, f"default_entity_id {value!r} is not `<platform>.<object_id>`")
        return
    domain, object_id = value.split(".", 1)
    if domain != platform:
        problem(where, f"default_entity_id {value!r} is not on platform {platform}")
    if not OBJECT_ID.match(object_id):
        problem(where, f"default_entity_id {value!r}: object id must be lowercase letters, digits and _")


def check_sensor_options(where, platform, config):
    if platform != "sensor" or "options" not in config:
        return
    options = config.pop("options")
    if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
        problem(where, f"options {options!r} must be a non-empty list of strings")
    if config.get("device_class") != "enum":
        problem(where, "options need `device_class: enum`")


def check_entity(where, platform, config):
    """One entity's expanded config against the platform's DISCOVERY_SCHEMA."""
    config = dict(config)
    check_default_entity_id(where, platform, config)
    check_sensor_options(where, platform, config)
    if "origin" in config:
        try:
            MQTT_ORIGIN_INFO_SCHEMA(config.pop("origin"))
        except Exception as e:  # noqa: BLE001 - every schema error is a finding
            problem(where, f"origin: {e}")
    try:
        module = importlib.import_module(f"homeassistant.components.mqtt.{platform}")
    except ImportError:
        problem(where, f"no MQTT platform `{platform}`")
        return
    try:
        valid = module.DISCOVERY_SCHEMA(config)
    except Exception as e:  # noqa: BLE001
        problem(where, f"{platform}: {e}")
        return
    for key in sorted(set(config) - set(valid)):
        problem(where, f"{platform}: unknown key `{key}` (Home Assistant drops it)")
    if isinstance(config.get("device"), dict) and isinstance(valid.get("device"), dict):
        for key in sorted(set(config["device"]) - set(valid["device"])):
            problem(where, f"device: unknown key `{key}`")
    checked["components"] += 1


def check_device(topic, payload):
    where = topic
    for key in ("dev", "o", "cmps"):
        if key not in payload and abbr.ABBREVIATIONS.get(key, key) not in payload:
            problem(where, f"device discovery needs `{key}`")
    device = payload.get("dev", payload.get("device"))
    if not isinstance(device, dict) or not device.get("ids", device.get("identifiers")):
        problem(where, "`dev` needs `ids`")
    components = payload.get("cmps", payload.get("components"))
    if not isinstance(components, dict) or not components:
        problem(where, "`cmps` must map component ids to configs")
        return
    shared = {k: v for k, v in payload.items() if k not in ("dev", "device", "o", "origin", "cmps", "components")}
    seen_ids = set()
    for cid, comp in components.items():
        cwhere = f"{topic} cmps.{cid}"
        if not isinstance(comp, dict) or not isinstance(comp.get("p", comp.get("platform")), str):
            problem(cwhere, "a component needs `p`")
            continue
        comp = dict(comp)
        platform = comp.pop("p", None) or comp.pop("platform")
        if not comp:
            checked["removed"] += 1
            continue
        uid = comp.get("unique_id", comp.get("uniq_id"))
        if not uid:
            problem(cwhere, "a device's component needs `unique_id`")
        elif uid in seen_ids:
            problem(cwhere, f"unique_id {uid} used twice")
        seen_ids.add(uid)
        # As Home Assistant merges them: shared options, the component, then the device and origin.
        merged = {**shared, **comp, "dev": device, "o": payload.get("o", payload.get("origin"))}
        check_entity(cwhere, platform, expand(merged))
    checked["devices"] += 1


def check_update_state(topic, payload):
    where = topic
    known = {"installed_version", "latest_version", "title", "release_summary", "release_url", "entity_picture"}
    newer = {"in_progress", "update_percentage"}
    for key in payload:
        if key not in known | newer:
            problem(where, f"update state: unknown key `{key}`")
    p = payload.get("update_percentage")
    if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 100):
        problem(where, f"update_percentage {p!r} must be 0-100 or null")
    if "in_progress" in payload and not isinstance(payload["in_progress"], bool):
        problem(where, "in_progress must be a boolean")
    if not isinstance(payload.get("installed_version"), str):
        problem(where, "installed_version must be a string")
    checked["states"] += 1


def main():
    messages = json.load(sys.stdin)
    for m in messages:
        topic, raw = m["topic"], m["payload"]
        if raw == "":
            checked["cleared"] += 1
            continue
        try:
            payload = json.loads(raw)
        except ValueError as e:
            problem(topic, f"not JSON: {e}")
            continue
        if DEVICE_TOPIC.match(topic):
            check_device(topic, payload)
        elif topic.endswith("/update/state"):
            check_update_state(topic, payload)
        elif match := ENTITY_TOPIC.match(topic):
            check_entity(topic, match.group(1), expand(payload))
        else:
            problem(topic, "not a discovery topic this script knows")
    for p in problems:
        print(p)
    print(json.dumps(checked))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
