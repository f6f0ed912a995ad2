//! Writing to stdout without panicking when it is closed.
//!
//! `println!` panics when its write fails, which it does as soon as the reader
//! of a pipe goes away (`orion-node job status web | head -1`, or `dev | tee`
//! stopped by Ctrl-C). [`say!`] ends a command quietly instead (exit 0: the
//! reader has what it wanted); [`note!`] drops the line and goes on, for the dev
//! cluster, which must still clean up after its terminal is gone.

use std::io::Write;

/// Prints a line to stdout; on a closed stdout ends the process with status 0.
macro_rules! say {
    ($($t:tt)*) => { $crate::out::line(format_args!($($t)*), true) };
}

/// Prints a line to stdout; on a closed stdout drops it and goes on.
macro_rules! note {
    ($($t:tt)*) => { $crate::out::line(format_args!($($t)*), false) };
}

pub(crate) use {note, say};

/// Writes one line; see [`say!`] and [`note!`].
pub fn line(args: std::fmt::Arguments<'_>, exit_when_closed: bool) {
    raw(format_args!("{args}\n"), exit_when_closed);
}

/// Writes text as is (no newline) and flushes it.
pub fn raw(args: std::fmt::Arguments<'_>, exit_when_closed: bool) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|_| out.flush());
    if written.is_err() && exit_when_closed {
        std::process::exit(0);
    }
}

/// Rows printed as aligned columns, each as wide as its widest cell.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text: columns two spaces apart, the last one unpadded.
    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width = |c: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..cols).map(width).collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints it (see [`say!`] for a closed stdout).
    pub fn print(&self) {
        raw(format_args!("{}", self.render()), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut t = Table::new(&["NAME", "STATUS"]);
        t.row(vec!["a-long-name".into(), "running".into()]);
        t.row(vec!["b".into(), "pending".into()]);
        assert_eq!(
            t.render(),
            "NAME         STATUS\na-long-name  running\nb            pending\n"
        );
    }
}
