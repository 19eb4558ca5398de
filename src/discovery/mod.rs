//! Background inputs to the reload writer that are not an operator: the
//! file watcher (`FileWatcher`), which asks for a reload when the config
//! file or a file it names changes, and `Discoverer`, which looks up the
//! backends' `discover` names and sends the addresses found.
//! Invariant: everything here only sends `Command`s to the writer and waits
//! for their outcome; nothing here builds or swaps a snapshot.

mod lookup;
mod records;
mod watch;

pub use records::{Discoverer, first_lookups};
pub use watch::{DEBOUNCE, FileWatcher};
