//! Runtimes: an image runs only where Docker does, a command without an
//! image only on a process (or SSH) node.

use super::Filter;
use crate::scheduler::candidate::{Ask, Candidate};
use crate::scheduler::explain::Reason;

/// Rejects nodes whose runtime cannot run the task
/// ([`crate::model::runs_on`]).
#[derive(Debug, Default)]
pub struct RuntimeFilter;

impl Filter for RuntimeFilter {
    fn name(&self) -> &'static str {
        "runtime"
    }

    fn check(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> Result<(), Reason> {
        crate::model::runs_on(c.node.info.runtime.as_deref(), &ask.spec.task)
            .map_err(Reason::Runtime)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::runs_on;
    use crate::spec::TaskSpec;

    #[test]
    fn images_need_docker_and_bare_commands_need_a_process_node() {
        let task = |image: &str, command: &[&str]| -> TaskSpec {
            serde_json::from_value(serde_json::json!({ "image": image, "command": command }))
                .unwrap()
        };
        let image = task("busybox:1", &["sleep", "9"]);
        let bare = task("", &["sleep", "9"]);
        assert_eq!(runs_on(None, &image), Ok(()));
        assert_eq!(runs_on(Some("docker"), &image), Ok(()));
        assert_eq!(
            runs_on(Some("process"), &image),
            Err("an image needs a node with the docker runtime")
        );
        assert_eq!(runs_on(Some("ssh"), &bare), Ok(()));
        assert_eq!(runs_on(Some("process"), &bare), Ok(()));
        assert_eq!(
            runs_on(Some("docker"), &bare),
            Err("no image: needs a node with the process or ssh runtime")
        );
        assert_eq!(runs_on(Some("fake"), &bare), Ok(()));
    }
}
