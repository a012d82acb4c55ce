//! The embeddable herd runtime.

pub mod scheduling;
pub mod task_book;
