//! Secrets come from a file, standard input or a prompt without echo, never from the command
//! line, where `ps` and shell history would see them.

use crate::client::{Failure, Result};
use std::io::{IsTerminal, Read};
use std::path::Path;

/// Where a secret is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--…-file PATH`.
    File(String),
    /// `--…-file -`, or no flag with standard input not a terminal.
    Stdin,
    /// No flag, standard input a terminal: ask without echo.
    Prompt,
}

impl Source {
    /// The source a `--…-file` flag names (`-` is standard input), else the prompt when standard
    /// input is a terminal, else standard input.
    pub fn from_flag(flag: Option<&str>) -> Source {
        match flag {
            Some("-") => Source::Stdin,
            Some(p) => Source::File(p.to_owned()),
            None if std::io::stdin().is_terminal() => Source::Prompt,
            None => Source::Stdin,
        }
    }
}

/// Standard input, read whole (it can be read once: a second `-` is refused by the caller).
pub fn read_stdin() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .take(1024 * 1024)
        .read_to_string(&mut s)
        .map_err(|e| Failure::Local(format!("cannot read standard input: {e}")))?;
    Ok(s)
}

/// The text of a file, or of standard input for `-`.
pub fn read_text(path: &str) -> Result<String> {
    if path == "-" {
        return read_stdin();
    }
    std::fs::read_to_string(Path::new(path))
        .map_err(|e| Failure::BadInput(format!("cannot read {path}: {e}")))
}

/// One secret (a token, a provider key), without the line ending a file or a pipe adds.
/// `what` names it in the prompt and in errors; the value is never echoed.
pub fn read_one(source: &Source, what: &str) -> Result<String> {
    let raw = match source {
        Source::File(p) => read_text(p)?,
        Source::Stdin => read_stdin()?,
        Source::Prompt => {
            rpassword::prompt_password(format!("{what} (not shown): ")).map_err(|e| {
                Failure::Local(format!("cannot read the {what} from the terminal: {e}"))
            })?
        }
    };
    one_line(&raw, what)
}

/// The one secret a text holds: its line ending(s) cut; empty, or several lines, is refused.
pub fn one_line(raw: &str, what: &str) -> Result<String> {
    let s = raw.trim_end_matches(['\n', '\r']);
    if s.trim().is_empty() {
        return Err(Failure::BadInput(format!("the {what} is empty")));
    }
    if s.contains(['\n', '\r']) {
        return Err(Failure::BadInput(format!(
            "the {what} must be one line; this input has several"
        )));
    }
    Ok(s.to_owned())
}

/// Several secrets, one per non-empty line (a gateway key's pool from standard input).
pub fn lines(raw: &str, what: &str) -> Result<Vec<String>> {
    let keys: Vec<String> = raw
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    if keys.is_empty() {
        return Err(Failure::BadInput(format!("no {what} in the input")));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_loses_its_line_ending_and_nothing_else() {
        assert_eq!(one_line("sk-abc  def\n", "key").unwrap(), "sk-abc  def");
        assert_eq!(one_line("sk-abc\r\n", "key").unwrap(), "sk-abc");
        assert_eq!(one_line(" sk-abc", "key").unwrap(), " sk-abc");
    }

    #[test]
    fn an_empty_or_multi_line_secret_is_refused_without_echoing_it() {
        for raw in ["", "\n", "  \n"] {
            assert!(
                matches!(one_line(raw, "key"), Err(Failure::BadInput(_))),
                "{raw:?}"
            );
        }
        let e = one_line("sk-first\nsk-second\n", "provider key").unwrap_err();
        assert!(!e.message().contains("sk-"), "{e}");
        assert_eq!(e.exit_status(), 2);
    }

    #[test]
    fn a_pool_is_one_key_per_non_empty_line() {
        assert_eq!(lines("a1\r\n\nb2\n", "key").unwrap(), vec!["a1", "b2"]);
        assert!(lines("\n\n", "key").is_err());
    }

    #[test]
    fn a_file_flag_names_a_file_and_a_dash_standard_input() {
        assert_eq!(Source::from_flag(Some("-")), Source::Stdin);
        assert_eq!(
            Source::from_flag(Some("k.txt")),
            Source::File("k.txt".into())
        );
    }

    #[test]
    fn a_secret_file_is_read_and_a_missing_one_is_bad_input() {
        let p = std::env::temp_dir().join(format!("keyward-cli-secret-{}", std::process::id()));
        std::fs::write(&p, "sk-from-a-file-123\n").unwrap();
        let src = Source::File(p.to_string_lossy().into_owned());
        assert_eq!(read_one(&src, "key").unwrap(), "sk-from-a-file-123");
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(read_one(&src, "key"), Err(Failure::BadInput(_))));
    }
}
