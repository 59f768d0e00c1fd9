//! Cairn's first-party plugins, embedded in the `cairn` binary so a manifest can name them
//! (`plugin = "age-sink"`) without shipping `.wasm` files. The build script compiles each
//! plugin crate to a `wasm32-wasip2` component.

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The component bytes of the bundled plugin `name`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUNDLED.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The names of all bundled plugins.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUNDLED.iter().map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn bundles_are_components() {
        assert!(super::names().any(|n| n == "age-sink"));
        for (name, bytes) in super::BUNDLED {
            assert_eq!(&bytes[..4], b"\0asm", "{name}");
            assert_eq!(bytes[4..8], [0x0d, 0, 1, 0], "{name} is a component");
        }
        assert!(super::get("no-such-plugin").is_none());
    }
}
