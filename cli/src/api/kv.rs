//! HashiCorp Vault's KV version 2 documents as vault_ext stores them (SPEC §12): a KV object
//! `{"value": "<string>"}` is a secret's bare text; any other object is its JSON text, and the
//! secret carries the tag [`JSON_TAG`]. Used by `serve/routes/vault_kv.rs`.

use serde_json::{Map, Value};
use std::collections::BTreeSet;
use zeroize::Zeroizing;

/// The tag that marks a secret whose text is a KV object's JSON (anything but a lone string
/// `value`). SQL readers see the JSON text.
pub const JSON_TAG: &str = "kv:json";
/// A secret's stored text as a KV object: the object itself for a secret tagged [`JSON_TAG`]
/// whose text is a JSON object, `{"value": text}` for every other.
pub fn decode(text: &str, tagged: bool) -> Map<String, Value> {
    if tagged {
        if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text) {
            return m;
        }
    }
    let mut m = Map::new();
    m.insert("value".into(), Value::String(text.to_string()));
    m
}

/// A KV object as stored text, and whether it is JSON (then tagged [`JSON_TAG`]): a lone string
/// `value` is stored bare, so SQL and `pgvault run` see the plain value.
pub fn encode(data: &Map<String, Value>) -> (Zeroizing<String>, bool) {
    if data.len() == 1 {
        if let Some(Value::String(v)) = data.get("value") {
            return (Zeroizing::new(v.clone()), false);
        }
    }
    (Zeroizing::new(Value::Object(data.clone()).to_string()), true)
}

/// JSON merge patch (RFC 7396) of `patch` into `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The next segment of each name under `prefix` (which ends with `/` or is empty), folders with
/// a trailing `/`, sorted and without duplicates.
pub fn list_keys<'a>(prefix: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut keys = BTreeSet::new();
    for name in names {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let key = match rest.find('/') {
            Some(i) => &rest[..=i],
            None => rest,
        };
        if !key.is_empty() && key != "/" {
            keys.insert(key.to_string());
        }
    }
    keys.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_lone_string_value_is_stored_bare_and_anything_else_as_tagged_json() {
        let m = |v: Value| v.as_object().unwrap().clone();
        let (t, json) = encode(&m(json!({"value": "s3cret"})));
        assert_eq!((t.as_str(), json), ("s3cret", false));
        let (t, json) = encode(&m(json!({"value": 5})));
        assert_eq!((t.as_str(), json), ("{\"value\":5}", true));
        let obj = json!({"user": "app", "port": 5432, "tls": true, "hosts": ["a", "b"], "x": null});
        let (t, json) = encode(&m(obj.clone()));
        assert!(json);
        assert_eq!(Value::Object(decode(&t, true)), obj);
    }

    #[test]
    fn untagged_or_non_object_text_reads_as_value() {
        assert_eq!(Value::Object(decode("{\"a\":1}", false)), json!({"value": "{\"a\":1}"}));
        assert_eq!(Value::Object(decode("[1,2]", true)), json!({"value": "[1,2]"}));
        assert_eq!(Value::Object(decode("plain", true)), json!({"value": "plain"}));
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}, "n": [1]}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "n": [1]}));
        let mut t = json!({"a": 1});
        merge_patch(&mut t, &json!({"a": {"b": 2}}));
        assert_eq!(t, json!({"a": {"b": 2}}));
    }

    #[test]
    fn listing_gives_the_next_segment_with_folders_marked() {
        let names = [
            "app/db",
            "app/api/key",
            "app/api/other",
            "apple",
            "top",
            "app/",
            "app//x",
        ];
        assert_eq!(list_keys("app/", names.iter().copied()), vec!["api/", "db"]);
        assert_eq!(list_keys("", names.iter().copied()), vec!["app/", "apple", "top"]);
        assert!(list_keys("none/", names.iter().copied()).is_empty());
    }
}
