//! The arguments of each module as written in a playbook live with their module
//! (`crate::modules`); re-exported here for the playbook parser and its callers. String fields
//! may hold `{{ … }}` expressions, expanded per host by the engine before planning.

pub use crate::modules::{
    CommandArgs, DirectoryArgs, FileArgs, Mode, ModuleSpec, PackageArgs, ServiceArgs, ServiceState, WaitForArgs,
};
