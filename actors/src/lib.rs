//! The embeddable herd runtime.

pub mod handlers;
pub mod scheduling;
pub mod task_book;
