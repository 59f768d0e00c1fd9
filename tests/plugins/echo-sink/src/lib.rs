//! A sink for tests and the boundary benchmark. With `{"passthrough": false}` (the default) it
//! keeps objects in its own memory; with `true` it stores them unchanged in the host's blob
//! store.

use std::cell::RefCell;
use std::collections::BTreeMap;

use cairn_sdk::prelude::*;
use cairn_sdk::{DeleteOutcome, PutOutcome};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    passthrough: bool,
}

thread_local! {
    static OBJECTS: RefCell<BTreeMap<String, Vec<u8>>> = const { RefCell::new(BTreeMap::new()) };
}

fn passthrough() -> Result<bool, SinkError> {
    config::<Config>()
        .map(|c| c.passthrough)
        .map_err(|e| SinkError::Config(format!("{e:?}")))
}

struct Echo;

impl Plugin for Echo {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "echo-sink",
            env!("CARGO_PKG_VERSION"),
            "Keeps objects as they are (tests only)",
        )
        .sink()
        .config_schema(serde_json::json!({
            "type": "object",
            "properties": {"passthrough": {"type": "boolean"}},
            "additionalProperties": false
        }))
    }
}

impl Sink for Echo {
    fn put(key: String, data: Vec<u8>) -> Result<bool, SinkError> {
        if passthrough()? {
            return Ok(BlobStore::put(&key, &data)? == PutOutcome::Created);
        }
        Ok(OBJECTS.with(|o| match o.borrow_mut().entry(key) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(data);
                true
            }
        }))
    }

    fn get(key: String) -> Result<Vec<u8>, SinkError> {
        if passthrough()? {
            return BlobStore::get(&key)?.ok_or(SinkError::NotFound);
        }
        OBJECTS.with(|o| o.borrow().get(&key).cloned().ok_or(SinkError::NotFound))
    }

    fn list(prefix: String) -> Result<Vec<String>, SinkError> {
        if passthrough()? {
            return Ok(BlobStore::list(&prefix)?
                .into_iter()
                .map(|m| m.key)
                .collect());
        }
        Ok(OBJECTS.with(|o| {
            o.borrow()
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect()
        }))
    }

    fn delete(key: String) -> Result<bool, SinkError> {
        if passthrough()? {
            return Ok(match BlobStore::delete(&key)? {
                DeleteOutcome::Deleted | DeleteOutcome::NotFound => true,
                DeleteOutcome::Refused(_) => false,
            });
        }
        OBJECTS.with(|o| o.borrow_mut().remove(&key));
        Ok(true)
    }
}

cairn_sdk::export_sink!(Echo);
