//! Whether a failure to start an `exec` program is worth retrying.
//!
//! Running out of file descriptors, processes or memory is a property of the
//! node at that moment (a burst of attempts, a leak elsewhere) and passes:
//! the attempt is retried, later or on another node. A program that does not
//! exist or may not be executed fails the same way every time, so retrying
//! only delays the operator's fix: the attempt fails for good with a message
//! saying what to change.

use std::io::{Error, ErrorKind};
use std::path::Path;

use crate::handlers::HandlerError;

/// The handler's verdict on `error`, returned by spawning `program` (with
/// `working_dir`, if configured).
pub fn classify(program: &str, working_dir: Option<&Path>, error: &Error) -> HandlerError {
    let transient = matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM | libc::ETXTBSY)
    ) || matches!(
        error.kind(),
        ErrorKind::OutOfMemory | ErrorKind::WouldBlock | ErrorKind::ExecutableFileBusy
    );
    if transient {
        return HandlerError::Retryable(format!(
            "cannot start {program:?} now: {error}; the node is short of resources, the attempt will be retried"
        ));
    }
    let fix = match error.kind() {
        ErrorKind::NotFound => match working_dir {
            Some(dir) => format!(
                "check that the program exists (install it, or give its full path in command) and that working_dir {} exists",
                dir.display()
            ),
            None => "check that the program exists: install it, or give its full path in command (the child's PATH is the node's PATH, or /usr/local/bin:/usr/bin:/bin)".to_string(),
        },
        ErrorKind::PermissionDenied => {
            "check that the node's user may execute it (chmod +x) and enter its directory".to_string()
        }
        _ => "check the agent type's command and working_dir".to_string(),
    };
    HandlerError::Fatal(format!("cannot start {program:?}: {error}; {fix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> Error {
        Error::from_raw_os_error(code)
    }

    #[test]
    fn exhausted_resources_are_retried() {
        for code in [libc::EMFILE, libc::ENFILE, libc::EAGAIN, libc::ENOMEM] {
            let verdict = classify("tool", None, &os(code));
            assert!(
                matches!(&verdict, HandlerError::Retryable(message) if message.contains("will be retried")),
                "errno {code}: {verdict:?}"
            );
        }
        assert!(matches!(
            classify("tool", None, &Error::from(ErrorKind::OutOfMemory)),
            HandlerError::Retryable(_)
        ));
    }

    #[test]
    fn a_missing_or_forbidden_program_is_fatal_and_says_what_to_fix() {
        let verdict = classify("summarize", None, &os(libc::ENOENT));
        assert!(
            matches!(&verdict, HandlerError::Fatal(message) if message.contains("\"summarize\"") && message.contains("give its full path")),
            "{verdict:?}"
        );
        let verdict = classify("summarize", Some(Path::new("/srv/jobs")), &os(libc::ENOENT));
        assert!(
            matches!(&verdict, HandlerError::Fatal(message) if message.contains("working_dir /srv/jobs")),
            "{verdict:?}"
        );
        let verdict = classify("./run.sh", None, &os(libc::EACCES));
        assert!(
            matches!(&verdict, HandlerError::Fatal(message) if message.contains("chmod +x")),
            "{verdict:?}"
        );
    }
}
