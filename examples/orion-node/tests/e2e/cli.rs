//! The command line on its own (no node, no engine): shell completions and
//! their registration.

use std::process::Command;

use crate::support::BIN;

/// Runs bash's completion function for `orion-node` on `words` (the last one
/// being completed), as bash does on TAB, and returns what it offers.
fn complete(words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        r#"source <("$BIN" completions bash) || exit 3
COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}; COMP_TYPE=9
_clap_complete_orion_node orion-node '{cur}' '{prev}'
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = quoted.join(" "),
        cword = words.len() - 1,
        line = words.join(" "),
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .env("BIN", BIN)
        .output()
        .expect("running bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `orion-node job st<TAB>` offers `status` (and `stop`), `job sta<TAB>` only
/// `status`: completion works past the first word of the hyphenated name.
#[test]
fn bash_completes_subcommands_past_the_first_word() {
    let offered = complete(&["orion-node", "job", "st"]);
    assert!(offered.contains(&"status".to_string()), "{offered:?}");
    assert_eq!(complete(&["orion-node", "job", "sta"]), ["status"]);
    assert!(complete(&["orion-node", "no"]).contains(&"node".to_string()));
    let flags = complete(&["orion-node", "node", "drain", "n1", "--de"]);
    assert!(flags.contains(&"--deadline".to_string()), "{flags:?}");
    assert!(flags.contains(&"--detach".to_string()), "{flags:?}");
}

/// Every shell gets a registration script that calls the binary back.
#[test]
fn every_shell_gets_a_registration() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("COMPLETE"),
            "{shell}: {text}"
        );
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'tcsh'"));
}
