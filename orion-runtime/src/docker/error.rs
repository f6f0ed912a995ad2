//! Mapping bollard's errors onto [`RuntimeError`]: unreachable, missing, or refused.

use bollard::errors::Error as BollardError;
use orion_core::RuntimeError;

/// The HTTP status of an engine's refusal, if the error is one.
pub(crate) fn status(err: &BollardError) -> Option<u16> {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's message, for a refusal; the error's text otherwise.
pub(crate) fn message(err: &BollardError) -> String {
    match err {
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Whether the error means the engine could not be reached or did not answer in time.
pub(crate) fn is_unreachable(err: &BollardError) -> bool {
    matches!(
        err,
        BollardError::SocketNotFoundError(_)
            | BollardError::RequestTimeoutError
            | BollardError::IOError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::HyperLegacyError { .. }
    )
}

/// Maps an error of operation `op` on container `id`: 404 → [`RuntimeError::NotFound`],
/// unreachable → [`RuntimeError::Unavailable`], anything else → [`RuntimeError::Engine`].
pub(crate) fn on_container(op: &'static str, id: &str, err: BollardError) -> RuntimeError {
    if status(&err) == Some(404) {
        return RuntimeError::NotFound(id.to_string());
    }
    general(op, err)
}

/// Maps an error of an operation on no container in particular.
pub(crate) fn general(op: &'static str, err: BollardError) -> RuntimeError {
    if is_unreachable(&err) {
        RuntimeError::Unavailable(format!("{op}: {}", source_chain(&err)))
    } else {
        RuntimeError::Engine {
            op,
            source: Box::new(err),
        }
    }
}

/// The error and its causes, joined: transport errors hide the useful part
/// ("connection refused") in their sources.
pub(crate) fn source_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_maps_to_not_found() {
        let err = BollardError::DockerResponseServerError {
            status_code: 404,
            message: "No such container: x".into(),
        };
        assert!(matches!(on_container("stop", "x", err), RuntimeError::NotFound(id) if id == "x"));
    }

    #[test]
    fn timeouts_and_missing_sockets_are_unavailable() {
        for err in [
            BollardError::RequestTimeoutError,
            BollardError::SocketNotFoundError("/nope".into()),
        ] {
            let mapped = on_container("inspect", "x", err);
            assert!(matches!(mapped, RuntimeError::Unavailable(_)), "{mapped}");
            assert!(mapped.is_retryable());
        }
    }

    #[test]
    fn conflicts_are_engine_errors() {
        let err = BollardError::DockerResponseServerError {
            status_code: 409,
            message: "name in use".into(),
        };
        assert!(matches!(
            on_container("create", "x", err),
            RuntimeError::Engine { op: "create", .. }
        ));
    }
}
