//! What `/proc` says of a process and its group.

/// Fields of `/proc/<pid>/stat` after the command name (which may hold
/// spaces and parentheses: everything up to the last `)` is skipped).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// A process's start time, in clock ticks after boot (field 22).
pub fn start_time(pid: i32) -> Option<u64> {
    // Field 3 (state) is index 0 of what follows the name: 22 is index 19.
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether `pid` is alive and, when `start` is known, the same process that
/// started then (a reused pid is another process). A zombie is not alive.
pub fn alive(pid: i32, start: Option<u64>) -> bool {
    let Some(f) = stat_fields(pid) else {
        return false;
    };
    if f.first().is_some_and(|s| s == "Z" || s == "X") {
        return false;
    }
    match start {
        Some(s) => f.get(19).and_then(|v| v.parse::<u64>().ok()) == Some(s),
        None => true,
    }
}

/// What a process group uses now.
#[derive(Debug, Default)]
pub struct GroupUse {
    /// CPU time (user and system, with waited-for children), ns.
    pub cpu_ns: u64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Processes in the group.
    pub pids: u64,
}

/// Sums the processes whose group is `pgid`.
pub fn group(pgid: i32) -> GroupUse {
    use nix::unistd::{sysconf, SysconfVar};
    let var = |v| sysconf(v).ok().flatten().unwrap_or(0).max(1) as u64;
    let (tick, page) = (var(SysconfVar::CLK_TCK), var(SysconfVar::PAGE_SIZE));
    let mut out = GroupUse::default();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Some(f) = stat_fields(pid) else { continue };
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // pgrp is field 5 (index 2).
        if f.get(2).and_then(|v| v.parse::<i32>().ok()) != Some(pgid) {
            continue;
        }
        // utime 14, stime 15, cutime 16, cstime 17; rss 24.
        let ticks = num(11) + num(12) + num(13) + num(14);
        out.cpu_ns += ticks * 1_000_000_000 / tick;
        out.rss_bytes += num(21) * page;
        out.pids += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_another() {
        let me = std::process::id() as i32;
        let start = start_time(me).expect("our own start time");
        assert!(alive(me, Some(start)));
        assert!(alive(me, None));
        assert!(
            !alive(me, Some(start + 1)),
            "a reused pid is another process"
        );
        assert!(!alive(i32::MAX, None));
        let g = group(nix::unistd::getpgrp().as_raw());
        assert!(g.pids >= 1 && g.rss_bytes > 0, "{g:?}");
    }
}
