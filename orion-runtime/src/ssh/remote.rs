//! What is said to the remote shell: quoting, the environment (sent on stdin,
//! never on a command line), the commands that make, start, signal and remove
//! a task, and running one command to its end with its output collected.

use std::sync::Arc;

use bytes::Bytes;
use orion_core::runtime::{ExecOutput, EXEC_OUTPUT_MAX};
use orion_core::{RuntimeError, TaskLaunch};
use russh::{ChannelMsg, Sig};
use zeroize::Zeroizing;

use super::pool::Pool;

/// The name of the uploaded script in the task's directory.
pub(crate) const SCRIPT_FILE: &str = "script";

/// The marker line a task prints first, with its pid.
pub(crate) const PID_MARKER: &str = "orion-pid ";

/// The exit code a task is given when its connection dropped (as `ssh` does).
pub(crate) const DROPPED_CODE: i64 = 255;

/// `s` single-quoted for a POSIX shell.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Bytes single-quoted for a POSIX shell (values may be any bytes but NUL).
fn quote_bytes(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'\'');
    for &b in value {
        if b == b'\'' {
            out.extend_from_slice(br"'\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
}

/// A port name as it appears in `ORION_PORT_<NAME>`: upper-cased, anything
/// but letters and digits as `_`.
pub(crate) fn port_env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether `name` can be a shell variable.
fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The task's environment as `export K='v'` lines: `task.env`, the secrets,
/// and `ORION_PORT_<NAME>` / `ORION_ADDR_<NAME>` for each port binding
/// (`host` standing in for an unspecified bind address). Wiped when dropped.
pub(crate) fn env_script(
    launch: &TaskLaunch,
    host: &str,
) -> Result<Zeroizing<Vec<u8>>, RuntimeError> {
    let mut out = Zeroizing::new(Vec::new());
    let mut put = |name: &str, value: &[u8]| -> Result<(), RuntimeError> {
        if !valid_env_name(name) || value.contains(&0) {
            return Err(RuntimeError::Engine {
                op: "create",
                source: format!("environment variable {name:?} cannot be set by a shell").into(),
            });
        }
        out.extend_from_slice(b"export ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        quote_bytes(&mut out, value);
        out.push(b'\n');
        Ok(())
    };
    for (k, v) in &launch.task.env {
        put(k, v.as_bytes())?;
    }
    for (k, v) in &launch.secret_env {
        put(k, v.expose())?;
    }
    for p in &launch.ports {
        let name = port_env_name(&p.name);
        let ip = match p.host_ip.as_str() {
            "" | "0.0.0.0" | "::" => host,
            ip => ip,
        };
        put(
            &format!("ORION_PORT_{name}"),
            p.host_port.to_string().as_bytes(),
        )?;
        put(
            &format!("ORION_ADDR_{name}"),
            format!("{ip}:{}", p.host_port).as_bytes(),
        )?;
    }
    Ok(out)
}

/// The argv the task runs in its directory: the script's interpreter on the
/// uploaded script, else `command` + `args`.
pub(crate) fn task_argv(launch: &TaskLaunch) -> Result<Vec<String>, RuntimeError> {
    let task = &launch.task;
    let argv: Vec<String> = match &task.script {
        Some(script) => {
            let mut argv = vec![
                script.lang.interpreter().to_string(),
                format!("./{SCRIPT_FILE}"),
            ];
            argv.extend(script.args.iter().cloned());
            argv
        }
        None => task.command.iter().chain(&task.args).cloned().collect(),
    };
    if argv.is_empty() {
        return Err(RuntimeError::Engine {
            op: "create",
            source: "the ssh runtime needs a command or a script: the task has neither".into(),
        });
    }
    Ok(argv)
}

/// `script` run by `/bin/sh` whatever the account's login shell is.
pub(crate) fn sh(script: &str) -> String {
    format!("exec /bin/sh -c {}", quote(script))
}

/// Makes the task's temporary directory (uploading the script from stdin when
/// `with_script`) and prints its path.
pub(crate) fn make_dir(alloc: &str, with_script: bool) -> String {
    let safe: String = alloc
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect();
    let upload = if with_script {
        format!(" && cat > \"$d/{SCRIPT_FILE}\"")
    } else {
        String::new()
    };
    sh(&format!(
        "d=$(mktemp -d \"${{TMPDIR:-/tmp}}/orion-{safe}.XXXXXX\"){upload} && printf '%s\\n' \"$d\""
    ))
}

/// Runs `argv` in `dir` after reading the environment from stdin; prints
/// [`PID_MARKER`] and its pid first when `announce`. The shell `exec`s the
/// command, so the pid is the command's, and the leader of its process group
/// (sshd makes each session its own).
pub(crate) fn run_in(dir: &str, argv: &[String], announce: bool) -> String {
    let cmd: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    let pid = if announce {
        format!("printf '{PID_MARKER}%s\\n' $$; ")
    } else {
        String::new()
    };
    sh(&format!(
        "cd {} || exit 127; eval \"$(cat)\"; {pid}exec {}",
        quote(dir),
        cmd.join(" ")
    ))
}

/// Sends `signal` (`TERM`, `KILL`) to the process group led by `pid`, or to
/// the process when it leads none.
pub(crate) fn signal(pid: u32, signal: &str) -> String {
    sh(&format!(
        "kill -{signal} -{pid} 2>/dev/null || kill -{signal} {pid} 2>/dev/null; exit 0"
    ))
}

/// Like [`signal`], for a pid from an earlier connection: only when the
/// process still works in `dir` (where `/proc` tells), so a recycled pid is
/// left alone.
pub(crate) fn signal_orphan(pid: u32, signal: &str, dir: &str) -> String {
    sh(&format!(
        "if [ -d /proc/{pid} ] && [ \"$(readlink /proc/{pid}/cwd)\" != {} ]; then exit 0; fi; \
         kill -{signal} -{pid} 2>/dev/null || kill -{signal} {pid} 2>/dev/null; exit 0",
        quote(dir)
    ))
}

/// Removes the task's directory.
pub(crate) fn remove_dir(dir: &str) -> String {
    sh(&format!("rm -rf {}", quote(dir)))
}

/// A signal's number, for the 128+n exit code a shell reports.
pub(crate) fn signal_number(sig: &Sig) -> i64 {
    match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(name) => match name.as_str() {
            "USR2" => 12,
            "BUS" => 7,
            "TRAP" => 5,
            _ => 0,
        },
    }
}

/// Runs `command` on a pooled connection with `stdin` (then end of input) and
/// collects its output, the first [`EXEC_OUTPUT_MAX`] bytes of each stream.
/// A connection that drops before the exit status is `Unavailable`.
pub(crate) async fn run(
    pool: &Arc<Pool>,
    command: &str,
    stdin: &[u8],
) -> Result<ExecOutput, RuntimeError> {
    let (mut ch, lease) = pool.channel().await?;
    let failed = |e: russh::Error| RuntimeError::Unavailable(format!("ssh exec: {e}"));
    ch.exec(true, command).await.map_err(failed)?;
    if !stdin.is_empty() {
        ch.data_bytes(Bytes::copy_from_slice(stdin))
            .await
            .map_err(failed)?;
    }
    ch.eof().await.map_err(failed)?;
    let (mut out, mut err, mut truncated) = (Vec::new(), Vec::new(), false);
    let mut code = None;
    let mut keep = |buf: &mut Vec<u8>, data: &[u8]| {
        let room = EXEC_OUTPUT_MAX.saturating_sub(buf.len());
        truncated |= data.len() > room;
        buf.extend_from_slice(&data[..data.len().min(room)]);
    };
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::Data { data } => keep(&mut out, &data),
            ChannelMsg::ExtendedData { data, ext: 1 } => keep(&mut err, &data),
            ChannelMsg::ExitStatus { exit_status } => code = Some(i64::from(exit_status)),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                code = Some(128 + signal_number(&signal_name))
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    let closed = lease.is_closed();
    drop(lease);
    let Some(exit_code) = code else {
        return Err(RuntimeError::Unavailable(if closed {
            "ssh: the connection dropped before the command ended".to_string()
        } else {
            "ssh: the channel closed without an exit status".to_string()
        }));
    };
    Ok(ExecOutput {
        exit_code,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        let mut out = Vec::new();
        quote_bytes(&mut out, b"a'b");
        assert_eq!(out, br"'a'\''b'");
    }

    #[test]
    fn port_names_become_variable_names() {
        assert_eq!(port_env_name("http"), "HTTP");
        assert_eq!(port_env_name("admin-api"), "ADMIN_API");
    }

    #[test]
    fn env_names_are_checked() {
        assert!(valid_env_name("PATH_2"));
        assert!(valid_env_name("_x"));
        assert!(!valid_env_name("2x"));
        assert!(!valid_env_name("a-b"));
        assert!(!valid_env_name(""));
    }

    #[test]
    fn the_task_command_reads_env_then_execs() {
        let cmd = run_in("/tmp/x", &["echo".into(), "a b".into()], true);
        assert!(cmd.starts_with("exec /bin/sh -c '"), "{cmd}");
        assert!(cmd.contains("eval \"$(cat)\""), "{cmd}");
        assert!(cmd.contains(r"exec '\''echo'\'' '\''a b'\''"), "{cmd}");
    }
}
