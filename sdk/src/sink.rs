//! The sink trait, the blob store it writes to, and its export macro.

use crate::world::cairn::plugin::blob_store as host;

pub use crate::world::exports::cairn::plugin::sink::SinkError;
pub use host::{DeleteOutcome, ObjectMeta, PutOutcome};

/// A sink: wraps the repository's opaque objects and places them in the blob store.
pub trait Sink: crate::Plugin {
    /// Stores `data` under `key` if absent; true if created, false if it existed.
    fn put(key: String, data: Vec<u8>) -> Result<bool, SinkError>;
    /// Returns the unwrapped object.
    fn get(key: String) -> Result<Vec<u8>, SinkError>;
    /// Lists keys with `prefix`.
    fn list(prefix: String) -> Result<Vec<String>, SinkError>;
    /// Deletes `key`; false if the store refused.
    fn delete(key: String) -> Result<bool, SinkError>;
}

/// The host's blob store, chosen by the sink's `url` in the manifest.
pub struct BlobStore;

impl BlobStore {
    /// Create-if-absent put.
    pub fn put(key: &str, data: &[u8]) -> Result<PutOutcome, SinkError> {
        host::put(key, data).map_err(SinkError::Store)
    }
    /// Whole-object get; `None` if absent.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, SinkError> {
        host::get(key).map_err(SinkError::Store)
    }
    /// Keys with `prefix`.
    pub fn list(prefix: &str) -> Result<Vec<ObjectMeta>, SinkError> {
        host::list(prefix).map_err(SinkError::Store)
    }
    /// Delete.
    pub fn delete(key: &str) -> Result<DeleteOutcome, SinkError> {
        host::delete(key).map_err(SinkError::Store)
    }
}

/// Exports `$t` as the component's sink.
#[macro_export]
macro_rules! export_sink {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __CairnExport;
        $crate::__impl_plugin_guest!(__CairnExport, $t);
        impl $crate::bindings::exports::cairn::plugin::sink::Guest for __CairnExport {
            fn put(key: ::std::string::String, data: ::std::vec::Vec<u8>) -> ::std::result::Result<bool, $crate::SinkError> {
                <$t as $crate::Sink>::put(key, data)
            }
            fn get(key: ::std::string::String) -> ::std::result::Result<::std::vec::Vec<u8>, $crate::SinkError> {
                <$t as $crate::Sink>::get(key)
            }
            fn list(prefix: ::std::string::String) -> ::std::result::Result<::std::vec::Vec<::std::string::String>, $crate::SinkError> {
                <$t as $crate::Sink>::list(prefix)
            }
            fn delete(key: ::std::string::String) -> ::std::result::Result<bool, $crate::SinkError> {
                <$t as $crate::Sink>::delete(key)
            }
        }
        $crate::bindings::__export_world!(__CairnExport with_types_in $crate::bindings);
    };
}
